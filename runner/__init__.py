"""minirun: runs images from the minicontainer store in isolated containers."""
