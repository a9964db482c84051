"""`minibuild build` end to end on the real kernel: overlay mounts, RUN through the runtime, the store."""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path

import pytest
from kits.buildkit import config_of, image_tree, run_build, write_context
from kits.runkit import no_leaks  # noqa: F401 - autouse: nothing may outlive a test
from minibuild.errors import BuildError, RecipeError
from minicache import gc
from minicache.errors import NotFound
from minicache.overlay import supported
from minicache.store import Store

pytestmark = [pytest.mark.root, pytest.mark.skipif(not supported() or os.geteuid() != 0, reason="needs root + overlay")]


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


def test_config_instructions_and_files(store: Store, busybox_image: str, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        {
            "Containerfile": f"""\
ARG BASE={busybox_image}
FROM $BASE
ARG WHO=world
ENV GREETING="hello ${{WHO}}" DIR=/srv
LABEL org.example.kind="demo app" other=${{UNSET:-fallback}}
WORKDIR $DIR
COPY site/ ./www/
RUN echo "$GREETING $WHO" > greeting.txt && rm /bin/yes
USER 1000:1000
EXPOSE 8080 9000-9001/udp
VOLUME /data
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --retries=2 CMD wget -q -O- localhost:8080
ENTRYPOINT ["httpd", "-f"]
CMD ["-p", "8080"]
ONBUILD RUN echo child
""",
            "site/index.html": "<h1>hi</h1>\n",
        },
    )
    _result, out = run_build(store, ctx, tags=["built:1"], build_args={"WHO": "there"})
    assert "STEP 1/15: FROM $BASE" in out and "STEP 15/15: ONBUILD RUN echo child" in out
    cfg = config_of(store, "built:1")
    c = cfg["config"]
    assert "GREETING=hello there" in c["Env"] and "DIR=/srv" in c["Env"]
    assert not any(e.startswith("WHO=") for e in c["Env"])  # ARGs are not kept in the image
    assert c["Labels"] == {"org.example.kind": "demo app", "other": "fallback"}
    assert c["WorkingDir"] == "/srv" and c["User"] == "1000:1000"
    assert c["ExposedPorts"] == {"8080/tcp": {}, "9000/udp": {}, "9001/udp": {}}
    assert c["Volumes"] == {"/data": {}} and c["StopSignal"] == "SIGTERM"
    assert c["Healthcheck"] == {
        "Test": ["CMD-SHELL", "wget -q -O- localhost:8080"],
        "Interval": 5_000_000_000,
        "Retries": 2,
    }
    assert c["Entrypoint"] == ["httpd", "-f"] and c["Cmd"] == ["-p", "8080"]
    assert c["OnBuild"] == ["RUN echo child"]
    tree = image_tree(store, "built:1")
    assert tree["srv/greeting.txt"][4] == b"hello there there\n"
    assert tree["srv/www/index.html"][:4] == ("file", 0o644, 0, 0)
    assert "bin/yes" not in tree and "bin/sh" in tree
    assert "proc" in tree  # from the base image; the runtime's mount points are never added by a step
    assert [h.get("empty_layer", False) for h in cfg["history"][-3:]] == [True, True, True]
    assert len(cfg["rootfs"]["diff_ids"]) == 4  # base, WORKDIR, COPY, RUN
    assert mounts_under(store.root) == []


def test_cache_reuse_and_invalidation(store: Store, busybox_image: str, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        {
            "Containerfile": f"FROM {busybox_image}\nRUN echo one > /one\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copy\n",
            "a.txt": "first\n",
        },
    )
    first, _ = run_build(store, ctx, tags=["cached:1"])
    started = time.monotonic()
    again, out = run_build(store, ctx, tags=["cached:1"])
    assert time.monotonic() - started < 1.0
    assert out.count("--> CACHED") == 3 and again.cached == 3
    assert again.image_id == first.image_id  # everything cached: the same image, as in Docker
    (ctx / "a.txt").write_text("second\n")
    changed, out = run_build(store, ctx, tags=["cached:1"])
    assert out.count("--> CACHED") == 1  # only the RUN before the COPY
    assert out.index("--> CACHED") < out.index("COPY a.txt")
    assert image_tree(store, "cached:1")["copy"][4] == b"second\n"
    assert changed.image_id != first.image_id
    _nocache, out = run_build(store, ctx, no_cache=True)
    assert "CACHED" not in out


def test_fully_cached_rebuild_writes_no_record_but_new_names(store: Store, busybox_image: str, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Containerfile": f"FROM {busybox_image}\nCOPY a.txt /a\n", "a.txt": "x\n"})
    first, _ = run_build(store, ctx, tags=["quiet:1"])

    def files() -> dict[str, tuple[int, int]]:
        """Each record, reference file and cache entry with its inode and mtime: a replaced file shows."""
        return {
            str(p): (p.stat().st_ino, p.stat().st_mtime_ns)
            for d in (Path(store.images_dir), Path(store.buildcache_dir))
            for p in d.iterdir()
        }

    before = files()
    again, out = run_build(store, ctx, tags=["quiet:1"])
    assert again.image_id == first.image_id and "--> CACHED" in out
    assert files() == before  # nothing changed, so nothing is rewritten (nor synced)
    run_build(store, ctx, tags=["quiet:1", "quiet:2"])  # a new name on a fully cached rebuild is still given
    assert store.images.resolve("quiet:2").id == first.image_id
    store.images.untag("quiet:1")
    run_build(store, ctx, tags=["quiet:1"])
    assert store.images.resolve("quiet:1").id == first.image_id


def test_reproducible_with_timestamp(store: Store, busybox_image: str, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        {"Containerfile": f"FROM {busybox_image}\nCOPY f /f\nRUN date > /built && touch /tmp/x\n", "f": "x\n"},
    )
    a, _ = run_build(store, ctx, timestamp=1_700_000_000, no_cache=True)
    time.sleep(1.1)
    os.utime(ctx / "f")
    b, _ = run_build(store, ctx, timestamp=1_700_000_000, no_cache=True)
    # `date` output differs between the runs, so the RUN layer differs; the rest must be byte-identical
    cfg_a, cfg_b = (store.blobs.read_json(x.image_id) for x in (a, b))
    assert cfg_a["created"] == cfg_b["created"] == "2023-11-14T22:13:20Z"
    assert cfg_a["rootfs"]["diff_ids"][:2] == cfg_b["rootfs"]["diff_ids"][:2]
    ctx2 = write_context(
        tmp_path / "ctx2", {"Containerfile": f"FROM {busybox_image}\nCOPY f /f\nRUN echo hi > /hi\n", "f": "x\n"}
    )
    c, _ = run_build(store, ctx2, timestamp=1_700_000_000, no_cache=True)
    d, _ = run_build(store, ctx2, timestamp=1_700_000_000, no_cache=True)
    assert c.image_id == d.image_id and c.manifest == d.manifest
    tree = image_tree(store, c.image_id)
    assert tree["hi"][4] == b"hi\n"


def test_source_date_epoch(store: Store, busybox_image: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")
    ctx = write_context(tmp_path / "ctx", {"Containerfile": f"FROM {busybox_image}\nRUN echo x > /x\n"})
    a, _ = run_build(store, ctx, no_cache=True)
    b, _ = run_build(store, ctx, no_cache=True)
    assert a.image_id == b.image_id
    assert store.blobs.read_json(a.image_id)["created"] == "2001-09-09T01:46:40Z"


def test_failed_build_leaves_no_image_and_prune_cleans(store: Store, busybox_image: str, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Containerfile": f"FROM {busybox_image}\nRUN echo ok > /ok\nRUN exit 3\n"})
    images_before = set(store.images.ids())
    with pytest.raises(BuildError, match=r"Containerfile:3: RUN: `/bin/sh -c exit 3` returned a non-zero code: 3"):
        run_build(store, ctx, tags=["broken:1"])
    assert set(store.images.ids()) == images_before
    with pytest.raises(NotFound):
        store.images.resolve("broken:1")
    base_layers = set(store.images.resolve(busybox_image).chain_ids)
    assert set(store.layers.all()) - base_layers  # the first RUN's layer stays, as cache
    report = gc.collect(store)
    assert report.layers and set(store.layers.all()) == base_layers
    assert store.buildcache.keys() == []  # its cache entry went with it
    assert gc.check(store) == []
    assert mounts_under(store.root) == []


def test_multistage_copy_from_and_target(store: Store, busybox_image: str, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        {
            "Containerfile": f"""\
FROM {busybox_image} AS build
RUN mkdir -p /out && echo built > /out/app && chmod 0750 /out/app
FROM build AS unused
RUN exit 1
FROM scratch
COPY --from=build --chown=7:8 /out/app /bin/app
COPY --from=0 /bin/busybox /bin/busybox
""",
        },
    )
    _result, out = run_build(store, ctx, tags=["multi:1"])
    assert "exit 1" not in out  # a stage nobody needs is not built
    tree = image_tree(store, "multi:1")
    assert tree["bin/app"] == ("file", 0o750, 7, 8, b"built\n")
    assert set(tree) == {"bin", "bin/app", "bin/busybox"}
    _, out = run_build(store, ctx, tags=["stage:build"], target="build")
    assert "STEP 3/3" in out or "STEP 2/2" in out
    with pytest.raises(NotFound, match="no stage named"):
        run_build(store, ctx, target="nope")


def test_copy_globs_ignore_chmod_and_dest_rules(store: Store, busybox_image: str, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        {
            "Containerfile": f"""\
FROM {busybox_image}
COPY *.txt /txt/
COPY --chmod=0600 conf/ /etc/app/
COPY one.txt /renamed
COPY ["dir with space/f", "/spaced/"]
COPY . /all/
""",
            "one.txt": "1",
            "two.txt": "2",
            "skip.txt": "s",
            "conf/a.conf": "a",
            "conf/sub/b.conf": "b",
            "conf/sub/keep.log": "k",
            "dir with space/f": "f",
            ".dockerignore": "skip.txt\nconf/**/*.log\n!conf/sub/keep.log\nsecrets\n",
            "secrets/key": "k",
        },
    )
    run_build(store, ctx, tags=["globs:1"])
    tree = image_tree(store, "globs:1")
    assert tree["txt/one.txt"][4] == b"1" and tree["txt/two.txt"][4] == b"2" and "txt/skip.txt" not in tree
    assert tree["etc/app/a.conf"][1] == 0o600 and tree["etc/app/sub/b.conf"][4] == b"b"
    assert tree["etc/app/sub/keep.log"][4] == b"k"
    assert tree["renamed"][4] == b"1" and tree["spaced/f"][4] == b"f"
    assert "all/secrets" not in tree and "all/secrets/key" not in tree and "all/skip.txt" not in tree
    assert tree["all/one.txt"][4] == b"1"


def test_add_local_tar_and_url_refusal(store: Store, busybox_image: str, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("pkg/hello.txt")
        info.size = 5
        info.uid = 12
        tar.addfile(info, io.BytesIO(b"hello"))
    ctx = write_context(
        tmp_path / "ctx",
        {"Containerfile": f"FROM {busybox_image}\nADD pkg.tar.gz /opt/\n", "pkg.tar.gz": buf.getvalue()},
    )
    run_build(store, ctx, tags=["add:1"])
    tree = image_tree(store, "add:1")
    assert tree["opt/pkg/hello.txt"][4] == b"hello" and tree["opt/pkg/hello.txt"][2] == 12
    (ctx / "Containerfile").write_text(f"FROM {busybox_image}\nADD http://127.0.0.1:9/file /file\n")
    with pytest.raises(RecipeError, match=r"Containerfile:2: ADD: .*refused without a checksum"):
        run_build(store, ctx)


def test_errors_name_file_line_and_instruction(store: Store, busybox_image: str, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Containerfile": f"FROM {busybox_image}\nCOPY missing.txt /x\n"})
    with pytest.raises(RecipeError, match=r"Containerfile:2: COPY: missing.txt: no such file"):
        run_build(store, ctx)
    (ctx / "Containerfile").write_text(f"FROM {busybox_image}\nUSER nobody-here\nRUN true\n")
    with pytest.raises(RecipeError, match=r"Containerfile:3: RUN: USER nobody-here: no user named"):
        run_build(store, ctx)
    (ctx / "Containerfile").write_text("RUN true\n")
    with pytest.raises(RecipeError, match=r"Containerfile:1: RUN: only ARG may come before the first FROM"):
        run_build(store, ctx)


def test_run_is_hardened_and_has_no_network_by_default(store: Store, busybox_image: str, tmp_path: Path) -> None:
    script = "ip -o link > /links; grep -E '^(CapEff|Seccomp):' /proc/self/status > /status; hostname > /host"
    ctx = write_context(tmp_path / "ctx", {"Containerfile": f"FROM {busybox_image}\nRUN {script}\n"})
    run_build(store, ctx, tags=["net:1"])
    tree = image_tree(store, "net:1")
    links = tree["links"][4].decode()
    assert links.count(": ") and all(" lo:" in line for line in links.strip().splitlines())
    status = dict(line.split(":\t") for line in tree["status"][4].decode().splitlines())
    assert status["Seccomp"] == "2" and status["CapEff"] == "00000000a80425fb"  # the runtime's filter and Docker's caps
    assert tree["host"][4] == b"minibuild\n"


def test_context_from_tar_on_disk(store: Store, busybox_image: str, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("Containerfile", f"FROM {busybox_image}\nCOPY f /f\n".encode()), ("f", b"from tar")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = tmp_path / "ctx.tar"
    archive.write_bytes(buf.getvalue())
    run_build(store, archive, tags=["tarctx:1"])
    assert image_tree(store, "tarctx:1")["f"][4] == b"from tar"


def test_onbuild_triggers_run_in_the_child(store: Store, busybox_image: str, tmp_path: Path) -> None:
    parent = write_context(
        tmp_path / "parent",
        {"Containerfile": f"FROM {busybox_image}\nONBUILD COPY hello /hello\nONBUILD RUN echo ran > /ran\n"},
    )
    run_build(store, parent, tags=["parent:1"])
    assert image_tree(store, "parent:1").get("hello") is None
    child = write_context(
        tmp_path / "child", {"Containerfile": "FROM parent:1\nCMD cat /hello\n", "hello": "from child\n"}
    )
    _, out = run_build(store, child, tags=["child:1"])
    assert "--> ONBUILD COPY hello /hello" in out
    tree = image_tree(store, "child:1")
    assert tree["hello"][4] == b"from child\n" and tree["ran"][4] == b"ran\n"
    cfg = config_of(store, "child:1")["config"]
    assert "OnBuild" not in cfg and cfg["Cmd"] == ["/bin/sh", "-c", "cat /hello"]


def test_platform_and_shell(store: Store, busybox_image: str, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Containerfile": f"FROM --platform=linux/arm64 {busybox_image}\n"})
    with pytest.raises(RecipeError, match=r"Containerfile:1: FROM: image busybox-test:latest is for linux/amd64"):
        run_build(store, ctx)
    (ctx / "Containerfile").write_text(
        "ARG TARGETARCH\nFROM scratch AS empty\nFROM --platform=$BUILDPLATFORM "
        f'{busybox_image}\nARG TARGETARCH\nSHELL ["/bin/sh", "-e", "-c"]\nRUN echo "$TARGETARCH" > /arch\n'
    )
    run_build(store, ctx, tags=["arch:1"])
    assert image_tree(store, "arch:1")["arch"][4] in (b"amd64\n", b"arm64\n")
    assert config_of(store, "arch:1")["config"]["Shell"] == ["/bin/sh", "-e", "-c"]


def test_add_url_needs_and_checks_a_checksum(
    store: Store, busybox_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib
    import http.server
    import threading

    for key in list(os.environ):
        if "proxy" in key.lower():
            monkeypatch.delenv(key)
    body = b"downloaded\n"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/files/tool.txt"
        good = "sha256:" + hashlib.sha256(body).hexdigest()
        ctx = write_context(
            tmp_path / "ctx", {"Containerfile": f"FROM {busybox_image}\nADD --checksum={good} {url} /dl/\n"}
        )
        run_build(store, ctx, tags=["url:1"])
        assert image_tree(store, "url:1")["dl/tool.txt"][4] == body
        bad = "sha256:" + "0" * 64
        (ctx / "Containerfile").write_text(f"FROM {busybox_image}\nADD --checksum={bad} {url} /dl/\n")
        with pytest.raises(RecipeError, match=r"Containerfile:2: ADD: .*does not match the expected"):
            run_build(store, ctx)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_expansion_rules_of_env_arg_and_labels(store: Store, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        {
            "Containerfile": "ARG V=global\nFROM scratch\nENV A=1\nENV A=2 B=$A\nARG A=arg\nARG V\n"
            "LABEL b=$B a=$A v=${V} w='$V' q=\"${MISSING:-dflt}\"\nENV OLD legacy form kept\n"
        },
    )
    _, out = run_build(store, ctx, tags=["exp:1"], labels={"built.by": "test"}, build_args={"NOPE": "1", "V": "x"})
    assert "[Warning] one or more build-args ['NOPE'] were not consumed" in out
    cfg = config_of(store, "exp:1")["config"]
    # one ENV's pairs see the values before it; ENV wins over ARG; a stage's bare ARG takes the global (here the
    # --build-arg) value
    assert cfg["Labels"] == {"b": "1", "a": "2", "v": "x", "w": "$V", "q": "dflt", "built.by": "test"}
    assert cfg["Env"][-3:] == ["A=2", "B=1", "OLD=legacy form kept"]


def test_heredocs_in_run_and_copy(store: Store, busybox_image: str, tmp_path: Path) -> None:
    recipe = f"""\
FROM {busybox_image}
ENV WHO=world
COPY <<EOF /expanded.txt
hello ${{WHO}} "quoted" \\n
EOF
COPY <<'EOF' /literal.txt
hello ${{WHO}}
EOF
RUN <<EOF
#!/bin/sh -e
echo "script $0" > /script.txt
EOF
RUN cat > /inline.txt <<EOF
inline $WHO
EOF
RUN <<-EOF
	echo tabs stripped > /tabs.txt
	EOF
"""
    ctx = write_context(tmp_path / "ctx", {"Containerfile": recipe})
    run_build(store, ctx, tags=["heredoc:1"])
    tree = image_tree(store, "heredoc:1")
    assert tree["expanded.txt"][4] == b'hello world "quoted" \\n\n'
    assert tree["literal.txt"][4] == b"hello ${WHO}\n"
    assert tree["script.txt"][4] == b"script /dev/pipes/EOF\n"
    assert tree["inline.txt"][4] == b"inline world\n"
    assert tree["tabs.txt"][4] == b"tabs stripped\n"
    assert "dev" in tree and "dev/pipes" not in tree  # the script's mount point is not part of the layer


def test_run_network_host_and_chown_by_name(store: Store, busybox_image: str, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        {
            "Containerfile": f"FROM {busybox_image}\nRUN --network=host ip -o link > /links\n"
            "COPY --chown=user:nogroup f /f\nCOPY --chown=nobody f /g\n",
            "f": "x",
        },
    )
    run_build(store, ctx, tags=["hostnet:1"])
    tree = image_tree(store, "hostnet:1")
    host_links = len(os.listdir("/sys/class/net"))
    assert len(tree["links"][4].decode().strip().splitlines()) == host_links
    assert "etc/resolv.conf" not in tree and "etc/hosts" not in tree  # the bind mounts' placeholders went
    assert tree["f"][2:4] == (1000, 65534) and tree["g"][2:4] == (65534, 65534)
