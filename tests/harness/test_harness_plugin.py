"""The pytest plugin, tested with pytester in a subprocess (the real entry point loads it)."""

import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from harness_helpers import make_image_dir, pid_gone

INNER_HEADER = textwrap.dedent("""
    import os
    import pytest
    from harness.vm.config import MachineConfig

    def fake(mode="normal", console=""):
        return MachineConfig(qemu_binary=os.environ["FAKE_QEMU_BIN"], accel="tcg",
                             env=(("FAKE_QEMU_MODE", mode), ("FAKE_QEMU_CONSOLE", console)))
""")


@pytest.fixture
def inner(pytester: pytest.Pytester, fake_qemu: Path, monkeypatch: pytest.MonkeyPatch):
    """A pytester whose tests can boot the fake QEMU through the plugin's fixtures."""
    monkeypatch.setenv("FAKE_QEMU_BIN", str(fake_qemu))
    monkeypatch.delenv("QEMU_TIMEOUT_MULTIPLIER", raising=False)
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\n")
    return pytester


def test_options_have_a_titled_group_and_ini_twins(inner: pytest.Pytester):
    result = inner.runpytest_subprocess("--help")
    out = result.stdout.str()
    assert "statefs-qemu: QEMU virtual machines:" in out
    for option in (
        "--qemu-arch",
        "--qemu-accel",
        "--qemu-timeout-multiplier",
        "--qemu-keep-artifacts",
        "--qemu-artifacts-dir",
        "--qemu-profile",
    ):
        assert option in out
        assert option[2:].replace("-", "_") in out  # the ini twin


def test_qemu_marker_is_registered_and_documented(inner: pytest.Pytester):
    result = inner.runpytest_subprocess("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.qemu(disk_size_mib=64, kernel_args=()):*"])


def test_report_header_shows_the_effective_settings(inner: pytest.Pytester):
    inner.makepyfile("def test_nothing(): pass")
    result = inner.runpytest_subprocess("--qemu-timeout-multiplier=2.5")
    result.stdout.fnmatch_lines(
        [
            "statefs-qemu: arch=aarch64 (default), accel=auto (default), "
            "timeout multiplier=2.5 (--qemu-timeout-multiplier)*",
            "statefs-qemu: accelerator *",
        ]
    )


@pytest.mark.parametrize(
    ("args", "env", "ini", "source"),
    [
        (["--qemu-timeout-multiplier=abc"], None, None, "--qemu-timeout-multiplier"),
        ([], "0", None, "$QEMU_TIMEOUT_MULTIPLIER"),
        ([], None, "qemu_timeout_multiplier = -1", "ini qemu_timeout_multiplier"),
    ],
)
def test_invalid_multiplier_is_a_usage_error_naming_its_source(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args, env, ini, source
):
    if env is not None:
        monkeypatch.setenv("QEMU_TIMEOUT_MULTIPLIER", env)
    if ini is not None:
        inner.makeini(f"[pytest]\n{ini}\n")
    inner.makepyfile("def test_nothing(): pass")
    result = inner.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{source}: timeout multiplier must be a number*"])


def test_precedence_is_cli_then_env_then_ini(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    inner.makeini("[pytest]\nqemu_timeout_multiplier = 3\n")
    inner.makepyfile("""
        def test_show(qemu_settings):
            print("MULTIPLIER", qemu_settings.multiplier, qemu_settings.sources)
    """)
    assert "MULTIPLIER 3.0" in inner.runpytest_subprocess("-s").stdout.str()
    monkeypatch.setenv("QEMU_TIMEOUT_MULTIPLIER", "2")
    assert "MULTIPLIER 2.0" in inner.runpytest_subprocess("-s").stdout.str()
    out = inner.runpytest_subprocess("-s", "--qemu-timeout-multiplier=5").stdout.str()
    assert "MULTIPLIER 5.0" in out
    assert "'timeout multiplier': '--qemu-timeout-multiplier'" in out


def test_bad_marker_arguments_are_a_usage_error(inner: pytest.Pytester):
    inner.makepyfile("""
        import pytest
        @pytest.mark.qemu(disk_size=1)
        def test_x(): pass
    """)
    result = inner.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*@pytest.mark.qemu takes only keyword arguments*"])


def test_failing_vm_test_reports_console_and_artifacts(inner: pytest.Pytester):
    inner.makepyfile(
        INNER_HEADER
        + textwrap.dedent("""
        @pytest.mark.qemu
        def test_fails(vm_factory):
            machine = vm_factory(config=fake(console="hello from the fake guest"))
            machine.console.expect("hello", vm_factory.timeout(5))
            assert False, "the test itself failed"
    """)
    )
    result = inner.runpytest_subprocess("--junitxml=junit.xml")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "qemu vm console (last 40 lines)" in out
    assert "hello from the fake guest" in out
    assert "qemu vm artifacts" in out
    artifacts = Path(out.split("artifacts: ", 1)[1].split()[0])
    assert (artifacts / "uart.log").read_bytes() == b"hello from the fake guest\r\n"  # kept
    # Not under the rootdir: pytest's own temporary directory (a test file anywhere must not
    # create build/ next to it).
    assert artifacts.is_relative_to(inner.path / "runpytest-0" / "qemu-runs0")
    assert not (inner.path / "build").exists()
    tree = ET.parse(inner.path / "junit.xml")
    properties = {p.get("name"): p.get("value") for p in tree.iter("property")}
    assert properties["qemu_artifacts_vm"] == str(artifacts)


def test_passing_vm_test_artifacts_go_unless_kept(inner: pytest.Pytester):
    inner.makepyfile(
        INNER_HEADER
        + textwrap.dedent("""
        @pytest.mark.qemu
        def test_passes(vm_factory):
            machine = vm_factory(config=fake(console="fine"))
            machine.console.expect("fine", vm_factory.timeout(5))
            print("ARTIFACTS", machine.artifacts.path)
    """)
    )
    out = inner.runpytest_subprocess("-s").stdout.str()
    assert not Path(out.split("ARTIFACTS ", 1)[1].split()[0]).exists()
    out = inner.runpytest_subprocess("-s", "--qemu-keep-artifacts=always").stdout.str()
    assert (Path(out.split("ARTIFACTS ", 1)[1].split()[0]) / "uart.log").exists()


def test_no_qemu_survives_a_test_that_raises_mid_boot(inner: pytest.Pytester, tmp_path: Path):
    pid_file = tmp_path / "pid"
    inner.makepyfile(
        INNER_HEADER
        + textwrap.dedent(f"""
        @pytest.mark.qemu
        def test_raises(vm_factory):
            machine = vm_factory(config=fake())
            open({str(pid_file)!r}, "w").write(str(machine.pid))
            raise RuntimeError("mid-boot")
    """)
    )
    result = inner.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    assert pid_gone(int(pid_file.read_text()))


def test_ctrl_c_in_a_vm_test_stops_qemu_and_keeps_its_artifacts(
    inner: pytest.Pytester, tmp_path: Path
):
    """Ctrl-C during a VM test (KeyboardInterrupt): pytest stops, the fixture's teardown still
    stops QEMU, and the interrupted test's artifacts are kept (it did not pass)."""
    record = tmp_path / "record"
    inner.makepyfile(
        INNER_HEADER
        + textwrap.dedent(f"""
        @pytest.mark.qemu
        def test_interrupted(vm_factory):
            machine = vm_factory(config=fake(console="FAKE: up"))
            machine.console.expect("FAKE: up", vm_factory.timeout(10))
            open({str(record)!r}, "w").write(f"{{machine.pid}} {{machine.artifacts.path}}")
            raise KeyboardInterrupt
    """)
    )
    result = inner.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*KeyboardInterrupt*"])
    pid, artifacts = record.read_text().split(" ", 1)
    assert pid_gone(int(pid))
    assert (Path(artifacts) / "uart.log").read_bytes() == b"FAKE: up\r\n"
    assert (Path(artifacts) / "qmp.jsonl").exists()


def test_vm_factory_requires_the_qemu_marker(inner: pytest.Pytester):
    inner.makepyfile(
        INNER_HEADER
        + textwrap.dedent("""
        def test_unmarked(vm_factory):
            vm_factory(config=fake())
    """)
    )
    result = inner.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*boots a VM: mark it @pytest.mark.qemu*"])


def test_expect_markers_failure_carries_the_report(inner: pytest.Pytester):
    inner.makepyfile(
        INNER_HEADER
        + textwrap.dedent("""
        from harness.errors import ContractFailure

        @pytest.mark.qemu
        def test_markers(vm_factory):
            machine = vm_factory(config=fake(console="A ok\\nSELFTEST: b FAIL\\nC ok"))
            with pytest.raises(ContractFailure) as caught:
                vm_factory.expect_markers(machine, ["A ok", "C ok"], timeout=10)
            assert "failure line 2" in caught.value.report
            assert caught.value.report.count("MISSING") == 1
    """)
    )
    inner.runpytest_subprocess().assert_outcomes(passed=1)


def test_artifacts_dir_from_the_ini_is_relative_to_the_rootdir(inner: pytest.Pytester):
    inner.makeini("[pytest]\naddopts = -p no:cacheprovider\nqemu_artifacts_dir = out/vms\n")
    inner.makepyfile(
        INNER_HEADER
        + textwrap.dedent("""
        @pytest.mark.qemu
        def test_kept(vm_factory):
            machine = vm_factory(config=fake(console="kept"))
            machine.console.expect("kept", vm_factory.timeout(5))
            print("ARTIFACTS", machine.artifacts.path)
    """)
    )
    result = inner.runpytest_subprocess("-s", "--qemu-keep-artifacts=always")
    result.assert_outcomes(passed=1)
    artifacts = Path(result.stdout.str().split("ARTIFACTS ", 1)[1].split()[0])
    assert artifacts.is_relative_to(inner.path / "out" / "vms")
    assert (artifacts / "uart.log").read_bytes() == b"kept\r\n"


def test_the_vm_fixture_boots_contract_mode_with_the_kernel_arguments_it_needs(
    inner: pytest.Pytester, tmp_path: Path
):
    """Without ``kernel_args`` the ``vm`` fixture boots boot 1 of the contract, nonce and all
    (the fake guest refuses contract mode without a valid ``sq.nonce``, as PID 1 does)."""
    image = make_image_dir(tmp_path / "image")
    inner.makeconftest(
        textwrap.dedent(f"""
        import dataclasses
        import os
        import pytest
        from harness.image import load_image
        from harness.vm.arch import ARCH_PROFILES

        os.environ["FAKE_QEMU_MODE"] = "contract"
        ARCH_PROFILES["aarch64"] = dataclasses.replace(
            ARCH_PROFILES["aarch64"], qemu_binary=os.environ["FAKE_QEMU_BIN"]
        )

        @pytest.fixture(scope="session")
        def guest_image():
            return load_image({str(image)!r})
    """)
    )
    inner.makepyfile(
        textwrap.dedent("""
        import pytest
        from harness.contract.spec import Contract

        @pytest.mark.qemu
        def test_default_boot(vm, vm_factory):
            vm_factory.expect_markers(vm, Contract.load().for_boot(1), until="poweroff")
            append = vm.argv[vm.argv.index("-append") + 1]
            assert "sq.mode=contract" in append and "sq.boot=1" in append
    """)
    )
    inner.runpytest_subprocess().assert_outcomes(passed=1)


def test_failure_report_says_qemu_exited_not_running(inner: pytest.Pytester):
    inner.makepyfile(
        INNER_HEADER
        + textwrap.dedent("""
        @pytest.mark.qemu
        def test_after_poweroff(vm_factory):
            machine = vm_factory(config=fake("poweroff", console="bye"))
            machine.console.expect("bye", vm_factory.timeout(5))
            machine.console.wait_closed(5)
            assert False, "failed after the guest powered off"
    """)
    )
    result = inner.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "state: QEMU has exited (exit code 0, shutdown reason guest-shutdown)" in out
    assert "state: RUNNING" not in out


def _image_conftest(inner: pytest.Pytester, tmp_path: Path) -> None:
    image = make_image_dir(tmp_path / "image")
    inner.makeconftest(
        textwrap.dedent(f"""
        import pytest
        from harness.image import load_image

        @pytest.fixture(scope="session")
        def guest_image():
            return load_image({str(image)!r})
    """)
    )


def test_a_profile_puts_its_lane_on_every_vm_and_its_markers_in_qemu_contract(
    inner: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """``--qemu-profile`` is ``run --profile`` for pytest: the lane's QEMU settings reach the
    VMs the fixtures make, its required markers reach ``qemu_contract``, the header names it."""
    _image_conftest(inner, tmp_path)
    inner.makepyfile(
        textwrap.dedent("""
        import pytest

        @pytest.mark.qemu
        def test_lane(vm_factory, qemu_contract, qemu_settings):
            machine = vm_factory(kernel_args=("sq.mode=shell",), launch=False)
            required = {m.id for m in qemu_contract.for_boot(1).markers if m.required}
            print("LANE", qemu_settings.profile, machine.config.smp, machine.config.icount,
                  "selftest-complete" in required)
            own = vm_factory(config=vm_factory.config(smp=3), launch=False)
            print("OVERRIDE", own.config.smp)
    """)
    )
    result = inner.runpytest_subprocess("-s", "--qemu-profile=icount")
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert "LANE icount 1 shift=auto True" in out
    assert "OVERRIDE 3" in out  # a test's own setting wins over the lane
    assert "profile=icount (--qemu-profile)" in out
    monkeypatch.setenv("QEMU_PROFILE", "smp2")
    out = inner.runpytest_subprocess("-s").stdout.str()
    assert "LANE smp2 2 None False" in out
    assert "profile=smp2 ($QEMU_PROFILE)" in out


def test_no_profile_keeps_the_image_defaults(inner: pytest.Pytester):
    inner.makepyfile("""
        def test_show(qemu_settings):
            print("LANE", qemu_settings.profile, qemu_settings.machine_overrides())
    """)
    assert "LANE default {}" in inner.runpytest_subprocess("-s").stdout.str()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--qemu-profile=nosuch"], "*--qemu-profile: *no profile 'nosuch' (profiles: default, *"),
        (["--qemu-profile=record"], "*profile 'record' records every boot*harness run --profile*"),
        (
            ["--qemu-profile=icount", "--qemu-accel=kvm"],
            "*--qemu-profile: profile 'icount': -icount shift=auto needs TCG*",
        ),
    ],
)
def test_a_profile_the_fixtures_cannot_honour_is_a_usage_error(
    inner: pytest.Pytester, args: list[str], message: str
):
    inner.makepyfile("def test_nothing(): pass")
    result = inner.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
