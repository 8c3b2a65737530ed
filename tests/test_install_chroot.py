"""scripts/install.sh for real: run as root inside a Debian 12 (bookworm) chroot.

Theory of operation: debootstrap (Debian's own tool) makes a minimal bookworm root file system
(`--variant=minbase`) with the packages install.sh asks for (`install.sh --print-packages`,
the one list) plus systemd and udev, which every real Debian box has. The downloaded packages are
cached outside the repo as a debootstrap tarball (`--make-tarball`, then `--unpack-tarball`),
and the Python dependencies as a wheelhouse built on the host with `pip wheel` (the host runs
CPython 3.11 like bookworm); the chroot gets no network. Then, with `chroot` and an empty
environment, the test runs the technician's command and checks what a technician would: the
aps user and groups, every directory's owner and mode, the `current` link, the agent
running from its virtualenv, the unit (systemd-analyze verify against the chroot's systemd,
and its exposure score) and the udev rules (udev's own parser, `udevadm test`, inside the
chroot: Debian 12's udevadm has no `verify`). A second run must change nothing (same output
verdict, same files, modes, owners, times), a damaged mode is repaired, and the uninstall
and the purge remove what they promise and keep what they promise.

The cache lives in $APS_TEST_CACHE (default /var/cache/aps-test, ~/.cache/aps-test when not
root): the debootstrap tarball, the
bootstrapped root file system as a tar (debootstrap's configure stage is the slow part), the
wheelhouse. Delete it for a cold run.
Needs root (chroot, chown); without root the test is skipped with that reason. A missing
debootstrap fails the test: CI installs it (`apt-get install -y debootstrap`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from tests.test_udev_rules import check_device_rule, parse_line, template_lines

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "scripts" / "install.sh"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# on every real box: systemd lets systemd-analyze verify the unit, udev parses the rules
TEST_ONLY_PACKAGES = ["systemd", "udev"]
_DEFAULT_CACHE = "/var/cache/aps-test" if os.geteuid() == 0 else "~/.cache/aps-test"
CACHE = Path(os.environ.get("APS_TEST_CACHE", _DEFAULT_CACHE)).expanduser()
DEVICE_GROUPS = {"dialout", "input", "lp", "plugdev", "video"}

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: chroot, useradd, chown")


def run(cmd: list[str], *, timeout: float = 900, check: bool = True) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and out.returncode != 0:
        raise AssertionError(
            f"{cmd} -> {out.returncode}\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
        )
    return out.stdout + out.stderr


def packages() -> list[str]:
    listed = run(["bash", str(INSTALL), "--print-packages"]).split()
    assert "python3-venv" in listed, listed
    return sorted(set(listed) | set(TEST_ONLY_PACKAGES))


def debootstrap_tool() -> str:
    for tool in (shutil.which("debootstrap"), "/usr/sbin/debootstrap"):
        if tool and Path(tool).exists():
            return tool
    pytest.fail("debootstrap is missing: apt-get install -y debootstrap (CI installs it)")


def cache_key(pkgs: list[str]) -> str:
    return hashlib.sha256(f"{SUITE} minbase {','.join(pkgs)}".encode()).hexdigest()[:12]


def debootstrap_tarball(pkgs: list[str], work: Path) -> Path:
    """The cached tarball of bookworm's minbase + pkgs; made (network) when missing."""
    tool = debootstrap_tool()
    key = cache_key(pkgs)
    tarball = CACHE / f"debootstrap-{SUITE}-{key}.tgz"
    if not tarball.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        part = tarball.with_suffix(".part")
        run(
            [
                tool,
                "--variant=minbase",
                f"--include={','.join(pkgs)}",
                f"--make-tarball={part}",
                SUITE,
                str(work / "make-tarball"),
                MIRROR,
            ],
            timeout=1500,
        )
        part.rename(tarball)
    return tarball


def make_root(pkgs: list[str], tarball: Path, root: Path) -> str:
    """The bootstrapped root file system in root; says how it was made.

    `debootstrap --unpack-tarball` runs dpkg's configure stage every time (a minute or two),
    so its result, before anything is installed, is cached as a plain tar next to the
    debootstrap tarball and unpacked from there on later runs.
    """
    done = CACHE / f"rootfs-{SUITE}-{cache_key(pkgs)}.tar"
    if done.exists():
        root.mkdir()
        run(["tar", "--numeric-owner", "-xpf", str(done), "-C", str(root)])
        return "cached root file system"
    run(
        [
            debootstrap_tool(),
            "--variant=minbase",
            f"--include={','.join(pkgs)}",
            f"--unpack-tarball={tarball}",
            SUITE,
            str(root),
            MIRROR,
        ],
        timeout=1500,
    )
    part = done.with_suffix(".part")
    run(["tar", "--numeric-owner", "-cf", str(part), "-C", str(root), "."])
    part.rename(done)
    return "debootstrap --unpack-tarball"


def wheelhouse() -> Path:
    """The dependencies as cp311 wheels, cached; the project itself is built in the chroot."""
    assert sys.version_info[:2] == (3, 11), "the wheelhouse must match bookworm's CPython 3.11"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    reqs = sorted(project["dependencies"]) + sorted(build)
    key = hashlib.sha256("\n".join(reqs).encode()).hexdigest()[:12]
    house = CACHE / f"wheelhouse-cp311-{key}"
    if not house.exists():
        part = CACHE / f"{house.name}.part"
        shutil.rmtree(part, ignore_errors=True)
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--disable-pip-version-check",
                "--wheel-dir",
                str(part),
                *reqs,
            ],
            timeout=1500,
        )
        part.rename(house)
    return house


def copy_source(dest: Path) -> None:
    """What a technician's checkout holds: tracked and untracked-but-not-ignored files."""
    listed = run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    )
    for rel in filter(None, listed.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def in_chroot(root: Path, *args: str, check: bool = True) -> str:
    env = [
        "env",
        "-i",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG=C.UTF-8",
    ]
    return run([*env, "chroot", str(root), *args], check=check)


def install(root: Path, *args: str) -> str:
    return in_chroot(root, "/usr/src/aps/scripts/install.sh", "--wheelhouse", "/tmp/wheels", *args)


def accounts(root: Path, name: str) -> dict[str, list[str]]:
    return {
        line.split(":")[0]: line.split(":")
        for line in (root / "etc" / name).read_text().splitlines()
        if line
    }


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every installed path's type, mode, owner, size, time and link target; the account files."""
    seen: dict[str, tuple[object, ...]] = {}
    tops = [
        "opt/aps",
        "etc/aps",
        "var/lib/aps",
        "etc/systemd/system",
        "etc/udev/rules.d",
        "usr/local/bin",
    ]
    for top in tops:
        base = root / top
        paths = [base, *base.rglob("*")] if base.exists() else []
        for path in paths:
            st = path.lstat()
            target = os.readlink(path) if path.is_symlink() else None
            seen[str(path.relative_to(root))] = (
                st.st_mode,
                st.st_uid,
                st.st_gid,
                st.st_size,
                st.st_mtime_ns,
                target,
            )
    for name in ("passwd", "group", "shadow", "gshadow"):
        seen[f"etc/{name}"] = ((root / "etc" / name).read_text(),)
    return seen


def mode_owner(root: Path, rel: str) -> tuple[str, str, str]:
    st = (root / rel).lstat()
    users = {int(v[2]): k for k, v in accounts(root, "passwd").items()}
    groups = {int(v[2]): k for k, v in accounts(root, "group").items()}
    return oct(stat.S_IMODE(st.st_mode)), users[st.st_uid], groups[st.st_gid]


def check_installed(root: Path) -> None:
    passwd, group = accounts(root, "passwd"), accounts(root, "group")
    # the service account: system uid, no home, no login, its own group and the device groups
    assert "aps" in passwd and "aps" in group
    _name, _pw, uid, gid, _gecos, home, shell = passwd["aps"]
    assert int(uid) < 1000 and gid == group["aps"][2]
    assert shell == "/usr/sbin/nologin" and home == "/nonexistent"
    assert not (root / "nonexistent").exists()
    members = {g for g, fields in group.items() if "aps" in fields[3].split(",")}
    assert members == DEVICE_GROUPS, members
    # directories
    assert mode_owner(root, "etc/aps") == ("0o750", "root", "aps")
    assert mode_owner(root, "var/lib/aps") == ("0o700", "aps", "aps")
    # the release and the atomic link
    assert os.readlink(root / "opt/aps/current") == "releases/0.1.0"
    assert not (root / "opt/aps/.current.tmp").exists()
    release = root / "opt/aps/releases/0.1.0"
    assert (release / ".aps-release").read_text().strip()
    for path in [release, *release.rglob("*")]:
        st = path.lstat()
        assert st.st_uid == 0, path  # root's: the service cannot change its own code
        if not stat.S_ISLNK(st.st_mode):
            assert stat.S_IMODE(st.st_mode) & 0o022 == 0, (path, oct(st.st_mode))
    assert os.readlink(root / "usr/local/bin/aps-agent") == "/opt/aps/current/venv/bin/aps-agent"
    assert "aps-agent 0.1.0" in in_chroot(root, "aps-agent", "--version")  # on PATH
    # the agent imports and reads its config schema inside the box (all wheels installed)
    in_chroot(
        root, "/opt/aps/current/venv/bin/python", "-c", "import edge_agent.app, edge_agent.cli"
    )
    # the unit: as shipped, verified against the chroot's systemd, hardened
    unit = root / "etc/systemd/system/aps-agent.service"
    assert unit.read_bytes() == (ROOT / "systemd/aps-agent.service").read_bytes()
    assert mode_owner(root, "etc/systemd/system/aps-agent.service") == ("0o644", "root", "root")
    wants = root / "etc/systemd/system/multi-user.target.wants/aps-agent.service"
    assert os.readlink(wants) == "/etc/systemd/system/aps-agent.service"  # starts at boot
    verify = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "aps-agent.service"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    score = run(
        ["systemd-analyze", "security", "--offline=yes", f"--root={root}", "aps-agent.service"]
    )
    found = re.search(r"Overall exposure level for aps-agent.service: (\d+\.\d)", score)
    assert found and float(found.group(1)) <= 2.0, score[-400:]
    # the udev rules: as shipped, every device rule keeps its promises
    rules = root / "etc/udev/rules.d/60-aps-devices.rules"
    assert rules.read_bytes() == (ROOT / "systemd/udev/60-aps-devices.rules").read_bytes()
    assert mode_owner(root, "etc/udev/rules.d/60-aps-devices.rules") == ("0o644", "root", "root")
    for line in rules.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            rule = parse_line(line)
            if any(key == "SYMLINK" for key, *_ in rule):
                check_device_rule(rule, DEVICE_GROUPS)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@needs_root
def udev_errors(root: Path, name: str) -> list[str]:
    """What udev's own parser says about /etc/udev/rules.d/<name> inside the chroot.

    `udevadm test` loads every rules file (and logs `path:line problem` for each bad line)
    before it simulates an event; the event itself fails without /sys, which is not mounted.
    """
    out = in_chroot(root, "udevadm", "test", "--action=add", "/sys/class/net/lo", check=False)
    path = f"/etc/udev/rules.d/{name}"
    assert f"Reading rules file: {path}" in out, out[-3000:]
    return [line for line in out.splitlines() if line.startswith(f"{path}:")]


def check_udev_parses(root: Path) -> None:
    assert udev_errors(root, "60-aps-devices.rules") == []
    # the filled-in templates, where docs/install.md says to put them
    shipped = (ROOT / "systemd/udev/60-aps-devices.rules").read_text()
    local = root / "etc/udev/rules.d/61-aps-devices-local.rules"
    lines = [
        ", ".join(f'{k}{"{" + a + "}" if a else ""}{o}"{v}"' for k, a, o, v in rule)
        for rule in template_lines(shipped)
    ]
    local.write_text("\n".join(lines) + "\n")
    assert udev_errors(root, local.name) == [], lines
    local.unlink()
    # the check can fail: udev names a broken line
    broken = root / "etc/udev/rules.d/62-aps-broken.rules"
    broken.write_text('SUBSYSTEM="tty", SYMLINK+="aps-scanner"\n')
    assert udev_errors(root, broken.name), "udevadm test did not report a broken rule"
    broken.unlink()


def test_install_in_a_debootstrap_chroot_is_idempotent_and_uninstalls(tmp_path: Path) -> None:
    host = {name: Path("/etc", name).read_bytes() for name in ("passwd", "group")}
    host_opt = Path("/opt/aps").exists()
    timings: dict[str, float] = {}
    start = time.monotonic()
    pkgs = packages()
    tarball = debootstrap_tarball(pkgs, tmp_path)
    house = wheelhouse()
    timings["cache (tarball + wheelhouse)"] = time.monotonic() - start
    root = tmp_path / "root"
    mark = time.monotonic()
    how = make_root(pkgs, tarball, root)
    timings[f"root file system ({how})"] = time.monotonic() - mark
    try:
        copy_source(root / "usr/src/aps")
        shutil.copytree(house, root / "tmp/wheels")
        assert "aps" not in accounts(root, "passwd")

        mark = time.monotonic()
        first = install(root)
        timings["install.sh, first run"] = time.monotonic() - mark
        assert "ok: Debian packages" in first, first  # the one list, all in the chroot already
        assert "changed: aps-agent.service enabled" in first, first  # offline: the link
        assert "skipped: systemctl daemon-reload and restart (systemd is not running" in first
        assert "changed: release 0.1.0 built" in first and "change(s)" in first, first
        check_installed(root)
        check_udev_parses(root)

        before = snapshot(root)
        mark = time.monotonic()
        second = install(root)
        timings["install.sh, second run"] = time.monotonic() - mark
        assert "changed:" not in second, second
        assert "nothing to change, release 0.1.0 is installed" in second, second
        assert snapshot(root) == before

        # a damaged install is repaired, then quiet again
        os.chmod(root / "etc/aps", 0o755)
        (root / "opt/aps/current").unlink()
        repaired = install(root)
        assert "changed: /etc/aps (0750 root:aps, was not)" in repaired, repaired
        assert "changed: /opt/aps/current -> releases/0.1.0" in repaired, repaired
        check_installed(root)
        assert "changed:" not in install(root)

        # the same version from changed source is refused, not silently mixed
        with (root / "usr/src/aps/edge_agent/__init__.py").open("a") as changed:
            changed.write("\n# changed\n")
        refused = in_chroot(
            root, "/usr/src/aps/scripts/install.sh", "--wheelhouse", "/tmp/wheels", check=False
        )
        assert "release 0.1.0 is installed from other source" in refused, refused

        # a new version: a release beside the old one, the link switched, the old one kept
        pyproject = root / "usr/src/aps/pyproject.toml"
        pyproject.write_text(
            pyproject.read_text().replace('version = "0.1.0"', 'version = "0.1.1"')
        )
        upgraded = install(root)
        assert "changed: release 0.1.1 built" in upgraded, upgraded
        assert "changed: /opt/aps/current -> releases/0.1.1" in upgraded, upgraded
        assert os.readlink(root / "opt/aps/current") == "releases/0.1.1"
        assert (root / "opt/aps/releases/0.1.0/.aps-release").exists()
        assert "aps-agent 0.1.1" in in_chroot(root, "aps-agent", "--version")
        assert "changed:" not in install(root)

        (root / "etc/aps/agent.toml").write_text("# provisioned\n")
        # the copy in the release uninstalls (docs/install.md step 10), and only that
        copy = in_chroot(root, "/opt/aps/current/scripts/install.sh", check=False)
        assert "this copy can only --uninstall" in copy, copy
        removed = in_chroot(root, "/opt/aps/current/scripts/install.sh", "--uninstall")
        for gone in (
            "opt/aps",
            "etc/systemd/system/aps-agent.service",
            "etc/udev/rules.d/60-aps-devices.rules",
            "usr/local/bin/aps-agent",
        ):
            assert not (root / gone).exists(), gone
        assert (root / "etc/aps/agent.toml").exists() and (root / "var/lib/aps").is_dir()
        assert "aps" in accounts(root, "passwd")
        assert "kept: /etc/aps" in removed, removed
        assert "changed: disabled aps-agent.service (offline" in removed, removed
        assert not (
            root / "etc/systemd/system/multi-user.target.wants/aps-agent.service"
        ).is_symlink()
        assert "nothing to remove" in install(root, "--uninstall")

        install(root, "--uninstall", "--purge")
        assert not (root / "etc/aps").exists() and not (root / "var/lib/aps").exists()
        assert "aps" not in accounts(root, "passwd") and "aps" not in accounts(root, "group")
        assert set(accounts(root, "group")) >= DEVICE_GROUPS
    finally:
        mounts = Path("/proc/mounts").read_text()
        assert str(root) not in mounts, "a mount is left inside the chroot"
        shutil.rmtree(root, ignore_errors=True)
        print("\ntimings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    # the host untouched: its accounts and /opt are as they were
    assert {name: Path("/etc", name).read_bytes() for name in ("passwd", "group")} == host
    assert Path("/opt/aps").exists() == host_opt


def script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=600, check=False
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--purge"], "--purge goes with --uninstall"),
        (["--frobnicate"], "unknown option --frobnicate"),
        (["--prefix"], "--prefix needs a directory"),
        (["--wheelhouse", "/nonexistent-wheels"], "--wheelhouse /nonexistent-wheels: no such"),
    ],
)
def test_bad_options_are_refused_with_the_reason(
    args: list[str], says: str, tmp_path: Path
) -> None:
    out = script("--prefix", str(tmp_path), "--no-system", *args)  # never the host's /
    assert out.returncode == 2, out
    assert says in out.stderr, out.stderr


def test_an_empty_wheelhouse_is_refused(tmp_path: Path) -> None:
    out = script("--prefix", str(tmp_path / "p"), "--wheelhouse", str(tmp_path))
    assert out.returncode == 2 and "no .whl files in it" in out.stderr, out


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_prefix_install_for_the_integrators_end_to_end_test(tmp_path: Path) -> None:
    """`--prefix DIR --no-system --wheelhouse W`: no root effects, idempotent, uninstalls."""
    prefix = tmp_path / "box"
    first = script("--prefix", str(prefix), "--no-system", "--wheelhouse", str(wheelhouse()))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "skipped: apt-get" in first.stdout and "skipped: systemctl" in first.stdout
    agent = prefix / "opt/aps/current/venv/bin/aps-agent"
    version = subprocess.run([str(agent), "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == "aps-agent 0.1.0", version
    assert oct(stat.S_IMODE((prefix / "etc/aps").stat().st_mode)) == "0o750"
    assert oct(stat.S_IMODE((prefix / "var/lib/aps").stat().st_mode)) == "0o700"
    again = script("--prefix", str(prefix), "--no-system", "--wheelhouse", str(wheelhouse()))
    assert "changed:" not in again.stdout and "nothing to change" in again.stdout, again.stdout
    gone = script("--prefix", str(prefix), "--no-system", "--uninstall")
    assert gone.returncode == 0 and not (prefix / "opt/aps").exists(), gone.stdout
    assert (prefix / "etc/aps").is_dir() and (prefix / "var/lib/aps").is_dir()
