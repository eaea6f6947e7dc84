"""Command-line tools: rosbag record/replay, video driver."""
