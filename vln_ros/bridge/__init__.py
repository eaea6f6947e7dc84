"""REST / WebSocket bridge (FastAPI) on top of the ROS graph."""
