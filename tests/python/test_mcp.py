"""The official MCP Python SDK against the gateway's MCP server, over Streamable HTTP (`/mcp`,
both the 2025 initialize handshake and the 2026-07-28 stateless revision) and over stdio
(`ai-gateway mcp`, as Claude Code and Claude Desktop launch it)."""

import asyncio
import json

import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

TOOLS = {
    "unified_completion",
    "get_provider_status",
    "list_models",
    "optimize_prompt",
    "run_ab_test",
    "health_check",
    "estimate_cost",
    "get_usage_metrics",
}


def http_client(gateway, mode="auto", key=None):
    headers = {"Authorization": f"Bearer {key or gateway['key']}"}
    transport = streamable_http_client(
        f"{gateway['root']}/mcp", http_client=httpx2.AsyncClient(headers=headers, timeout=60)
    )
    return Client(transport, mode=mode)


def stdio(gateway):
    params = StdioServerParameters(
        command=str(gateway["binary"]),
        args=["mcp", "--config", str(gateway["config"]), "--data-dir", str(gateway["work"] / "data-stdio")],
        env={**gateway["env"], "AIGW_LOG": "warn"},
    )
    return Client(stdio_client(params), mode="legacy")


async def exercise(client, label):
    """The flow every transport must support: tools, a routed completion with progress, a
    resource, the prompt, and a tool error."""
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert TOOLS <= set(tools)
    schema = tools["unified_completion"].input_schema
    assert {"prompt", "messages", "model", "requirements", "policy"} <= set(schema["properties"])
    assert tools["unified_completion"].output_schema is not None

    progress = []

    async def on_progress(value, total, message):
        progress.append((value, message))

    prompt = f"Translate 'good morning' into German ({label})"
    result = await client.call_tool(
        "unified_completion",
        {"prompt": prompt, "max_tokens": 40},
        progress_callback=on_progress,
    )
    assert not result.is_error, result.content
    summary = result.structured_content
    assert summary["provider"] == "simulated"
    assert summary["text"].startswith("[simulated]")
    assert summary["routing"]["task"] == "translation"
    assert summary["routing"]["policy"] == "balanced"
    assert summary["tokens"]["input"] > 0
    assert summary["cached"] is False
    assert progress and progress[0][1] == "routing the request"

    again = (await client.call_tool("unified_completion", {"prompt": prompt, "max_tokens": 40})).structured_content
    assert again["cached"] is True and again["cost_usd"] == 0 and again["text"] == summary["text"]
    fresh = await client.call_tool(
        "unified_completion", {"prompt": prompt, "max_tokens": 40, "cache": {"enabled": False}}
    )
    assert fresh.structured_content["cached"] is False

    error = await client.call_tool("unified_completion", {"prompt": "hi", "model": "no-such-model"})
    assert error.is_error
    assert "no-such-model" in error.content[0].text

    resource = await client.read_resource("aigw://catalog/models")
    catalog = json.loads(resource.contents[0].text)
    assert any(model["id"] == "simulated" for model in catalog["models"])

    prompt = await client.get_prompt("ai_gateway_prompt", {"task": "summarise the release notes"})
    assert "unified_completion" in prompt.messages[0].content.text


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_streamable_http(gateway, mode):
    async def main():
        async with http_client(gateway, mode) as client:
            if mode == "legacy":
                assert client.protocol_version in ("2025-06-18", "2025-11-25")
            else:
                assert client.protocol_version == "2026-07-28"
            await exercise(client, mode)

    asyncio.run(main())


def test_stdio(gateway):
    async def main():
        async with stdio(gateway) as client:
            assert client.server_info.name == "ai-gateway"
            await exercise(client, "stdio")

    asyncio.run(main())


def test_streamable_http_requires_the_key(gateway):
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    headers = {"Accept": "application/json, text/event-stream"}
    for auth in ({}, {"Authorization": "Bearer sk-wrong"}):
        response = httpx2.post(f"{gateway['root']}/mcp", json=initialize, headers={**headers, **auth})
        assert response.status_code == 401
        assert "key" in response.json()["error"]["message"]
    # The same client with the right key gets in (the positive case of the tests above).
    response = httpx2.post(
        f"{gateway['root']}/mcp", json=initialize, headers={**headers, "Authorization": f"Bearer {gateway['key']}"}
    )
    assert response.status_code == 200


def test_tools_answer_with_structured_results(gateway):
    async def main():
        async with http_client(gateway, "legacy") as client:
            health = (await client.call_tool("health_check", {})).structured_content
            assert health["status"] == "ok" and health["readiness"]["ready"] is True
            status = (await client.call_tool("get_provider_status", {})).structured_content
            assert any(p["id"] == "simulated" and p["unavailable"] is None for p in status["providers"])
            models = (await client.call_tool("list_models", {"task": "code"})).structured_content
            assert models["models"] and all("code" in m["specialties"] for m in models["models"])
            bad = await client.call_tool("list_models", {"task": "poetry"})
            assert bad.is_error and "poetry" in bad.content[0].text
            wrong_type = await client.call_tool("unified_completion", {"prompt": 42})
            assert wrong_type.is_error and "expected a string" in wrong_type.content[0].text

            estimate = await client.call_tool("estimate_cost", {"prompt": "Summarise the plot of Hamlet", "max_tokens": 300})
            assert not estimate.is_error, estimate.content
            candidates = estimate.structured_content["candidates"]
            assert candidates and all(c["max_output_tokens"] <= 300 for c in candidates)
            usage = await client.call_tool("get_usage_metrics", {"range": "1h"})
            assert not usage.is_error, usage.content
            assert usage.structured_content["totals"]["succeeded"] >= 1
            bad_range = await client.call_tool("get_usage_metrics", {"range": "1y"})
            assert bad_range.is_error and "1h, 24h, 7d, 30d" in bad_range.content[0].text

            rewrite = await client.call_tool("optimize_prompt", {"prompt": "make code faster pls", "goal": "specificity"})
            assert not rewrite.is_error, rewrite.content
            assert rewrite.structured_content["optimized"] and rewrite.structured_content["goal"] == "specificity"

            ab = await client.call_tool(
                "run_ab_test",
                {"prompt_a": "Say hi", "prompt_b": "Say hello to the whole wide world, politely", "runs": 2},
            )
            assert not ab.is_error, ab.content
            report = ab.structured_content
            assert report["a"]["succeeded"] == 2 and report["b"]["succeeded"] == 2
            assert report["winner"] in ("a", "b", "tie") and report["reason"]

    asyncio.run(main())
