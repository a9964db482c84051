"""The runtime: executes any OCI bundle (config.json + rootfs). Knows nothing about images or the store.

from minirun.runtime import start
proc = start("/path/to/bundle", container_id)
code = proc.wait()
"""

from minirun.runtime.launch import Process, StartError, start

__all__ = ["Process", "StartError", "start"]
