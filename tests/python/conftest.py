"""Starts the real ai-gateway binary on loopback with the bundled config for the Python client
tests. With no provider keys, requests are answered by the documented simulated provider, so the
tests need no network and no mock."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GATEWAY_KEY = "sk-gw-python-test-0123456789"
PROVIDER_ENV = [
    "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "XAI_API_KEY", "MISTRAL_API_KEY",
    "GROQ_API_KEY", "OPENAI_BASE_URL", "PORT", "AIGW_CONFIG", "AIGW_DATA_DIR",
]


def gateway_binary() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    binary = target / "release" / "ai-gateway"
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: build it with `cargo build --release` (or run .ci/test)")
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def gateway():
    work = Path(tempfile.mkdtemp(prefix="aigw-python-"))
    config = work / "config"
    config.mkdir()
    for name in ("providers.toml", "models.toml"):
        shutil.copy(REPO / "config" / name, config / name)
    for kind, source in (("providers", REPO / "plugins/dist"), ("policies", REPO / "policies/dist")):
        shutil.copytree(source, work / kind)
    port = free_port()
    (config / "gateway.toml").write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n\n'
        '[plugins]\nprovider_dir = "../providers"\npolicy_dir = "../policies"\n'
    )
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_ENV}
    env["GATEWAY_API_KEYS"] = f"python:{GATEWAY_KEY}"
    log = open(work / "gateway.log", "w")
    process = subprocess.Popen(
        [str(gateway_binary()), "serve", "--config", str(config), "--data-dir", str(work / "data")],
        env=env, stdout=subprocess.DEVNULL, stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            request = urllib.request.Request(f"{base}/ready", headers={"Authorization": f"Bearer {GATEWAY_KEY}"})
            with urllib.request.urlopen(request, timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("the gateway did not become ready:\n" + (work / "gateway.log").read_text())
        time.sleep(0.05)
    yield {
        "base_url": f"{base}/v1",
        "root": base,
        "key": GATEWAY_KEY,
        "binary": gateway_binary(),
        "config": config,
        "work": work,
        "env": env,
    }
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()
    shutil.rmtree(work, ignore_errors=True)
