"""vln_ros: language-conditioned navigation for legged robots on ROS 2."""
