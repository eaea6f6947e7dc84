"""x, y, z of a sensor_msgs/PointCloud2's data, without sensor_msgs_py (ROS-free).

The message lays each point out as ``point_step`` bytes with named fields at offsets; only
x, y and z are read, whatever else a driver packs in (intensity, ring, time). Points with a
NaN coordinate (an organised cloud's missing returns) are dropped.
"""
from __future__ import annotations

import numpy as np

__all__ = ['cloud_xyz']

# sensor_msgs/PointField datatypes that can hold a coordinate.
_TYPES = {7: 'f4', 8: 'f8'}  # FLOAT32, FLOAT64


def cloud_xyz(data: bytes, fields: list[tuple[str, int, int]], point_step: int,
              is_bigendian: bool = False) -> np.ndarray:
    """Return N x 3 coordinates from the packed data.

    ``fields`` holds (name, offset, datatype) for each PointField. Raises ValueError when x,
    y or z is missing or not a float type, or the layout does not fit the data.
    """
    layout = {name: (offset, datatype) for name, offset, datatype in fields}
    order = '>' if is_bigendian else '<'
    names, formats, offsets = [], [], []
    for axis in ('x', 'y', 'z'):
        if axis not in layout:
            raise ValueError(f'point cloud has no {axis} field (fields: {sorted(layout)})')
        offset, datatype = layout[axis]
        if datatype not in _TYPES:
            raise ValueError(f'point cloud field {axis} has datatype {datatype}, not FLOAT32 '
                             'or FLOAT64')
        names.append(axis)
        formats.append(order + _TYPES[datatype])
        offsets.append(offset)
    if point_step <= 0 or len(data) % point_step:
        raise ValueError(f'point cloud data ({len(data)} bytes) is not a whole number of '
                         f'{point_step}-byte points')
    dtype = np.dtype({'names': names, 'formats': formats, 'offsets': offsets,
                      'itemsize': point_step})
    if dtype.itemsize > point_step:
        raise ValueError('point cloud fields lie beyond point_step')
    raw = np.frombuffer(bytes(data), dtype=dtype)
    xyz = np.stack((raw['x'], raw['y'], raw['z']), axis=1).astype(float)
    return xyz[np.all(np.isfinite(xyz), axis=1)]
