from pathlib import Path

from minicache.store import Store


def test_busybox_image_fixture(store: Store, busybox_image: str) -> None:
    record = store.images.resolve(busybox_image)
    fs = Path(store.layers.fs(record.chain_ids[0]))
    assert (fs / "bin/busybox").is_file()
    assert (fs / "bin/sh").is_symlink()
    assert store.images.config(record)["config"]["Cmd"] == ["/bin/sh"]
