import mmap
import os
import pathlib

from vln_ros.tools.processes import remove_stale_port_segments

SHM = pathlib.Path('/dev/shm')


def test_stale_port_segments_of_a_domain_are_removed_and_mapped_ones_kept():
    domain = 231  # ports 65150..65399: far from any domain the tests use
    base = 7400 + 250 * domain
    stale = [SHM / f'fastrtps_port{base + 11}', SHM / f'fastrtps_port{base + 11}_el',
             SHM / f'sem.fastrtps_port{base + 11}_mutex']
    live = SHM / f'fastrtps_port{base + 13}'
    other_domain = SHM / f'fastrtps_port{base + 260}'
    for path in [*stale, live, other_domain]:
        path.write_bytes(b'\0' * 4096)
    fd = os.open(live, os.O_RDWR)
    mapping = mmap.mmap(fd, 4096)  # a live participant maps its segment
    try:
        removed = remove_stale_port_segments(domain)
        assert sorted(removed) == sorted(p.name for p in stale)
        assert live.exists() and other_domain.exists()
        assert not any(p.exists() for p in stale)
    finally:
        mapping.close()
        os.close(fd)
        for path in [*stale, live, other_domain]:
            path.unlink(missing_ok=True)
