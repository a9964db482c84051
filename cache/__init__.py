"""minicache: the content-addressed store that minibuild fills and minirun runs from.

The store: `store` (the root, its folders, locks and staging), `blobs`, `layers`, `images`, `reference`
and `digest`, the unpacker (`unpack`, `safetree`, `tarsplit`), the one resolver of paths inside an image's
root (`inroot`, used by both tools), the differ and image writer (`layerdiff`, `newimage`), overlay views of
layers (`overlay`), what keeps an image (`usage`, `gc`), the build step cache (`buildcache`), the event log
(`events`), image documents (`imageinfo`) and the store's modes.

Beside it, only what the store is built on and both CLIs need, since minibuild and minirun may not import
each other: the error root (`errors`), crash-safe writes (`atomic`), locks (`locks`), process identity
(`process`), descriptor-based tree removal (`rmtree`), the record type (`record`) and the kernel calls the
store makes (`syscalls`). What only minirun uses lives in minirun.
"""
