"""Point the ROS wheels' exported CMake files at this interpreter's include dirs.

The PyPI ROS 2 wheels were built in a manylinux container; their exported CMake targets name
that container's Python include and numpy include paths, which do not exist here.
"""
import pathlib
import sys
import sysconfig

import numpy

BUILDER_PY_INCLUDE = '/opt/python/cp311-cp311/include/python3.11'
BUILDER_NUMPY_INCLUDE = '/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include'


def main(prefix: str) -> int:
    """Rewrite every matching .cmake file under prefix/share; print how many changed."""
    replacements = {
        BUILDER_NUMPY_INCLUDE: numpy.get_include(),
        BUILDER_PY_INCLUDE: sysconfig.get_paths()['include'],
    }
    changed = 0
    for path in pathlib.Path(prefix, 'share').rglob('*.cmake'):
        text = path.read_text(errors='surrogateescape')
        new = text
        for old, repl in replacements.items():
            new = new.replace(old, repl)
        if new != text:
            path.write_text(new, errors='surrogateescape')
            changed += 1
    print(f'fixed {changed} cmake files')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))
