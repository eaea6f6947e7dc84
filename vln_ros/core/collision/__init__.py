"""The obstacle guard (ROS-free): footprint and zones, sensor points, source ages, the guard."""
