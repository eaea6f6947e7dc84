"""ROS-free core: images, keyframes, prompts, parsing, planning math, tasks."""
