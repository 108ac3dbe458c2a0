"""The official OpenAI Python SDK works against the gateway by changing only the base URL:
sync, async and streaming calls, and its typed errors for the gateway's error answers."""

import asyncio

import openai
import pytest


def client(gateway, key=None):
    return openai.OpenAI(base_url=gateway["base_url"], api_key=key or gateway["key"], max_retries=0)


def test_sync_completion(gateway):
    response = client(gateway).chat.completions.create(
        model="auto",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}],
        max_tokens=50,
        temperature=0.2,
    )
    assert response.object == "chat.completion"
    assert response.model == "simulated"
    assert response.choices[0].message.content.startswith("[simulated]")
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens > 0


def test_raw_response_carries_the_routing_explanation(gateway):
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Translate 'hello' into French"}]
    )
    assert raw.headers["x-gateway-provider"] == "simulated"
    assert raw.headers["x-gateway-policy"] == "balanced"
    assert raw.headers["x-gateway-task"] == "translation"
    assert raw.parse().choices[0].message.content


def test_async_completions_run_concurrently(gateway):
    async def main():
        async_client = openai.AsyncOpenAI(base_url=gateway["base_url"], api_key=gateway["key"], max_retries=0)
        responses = await asyncio.gather(*[
            async_client.chat.completions.create(model="auto", messages=[{"role": "user", "content": f"question {i}"}])
            for i in range(8)
        ])
        await async_client.close()
        return responses

    responses = asyncio.run(main())
    assert len(responses) == 8
    for i, response in enumerate(responses):
        assert f"question {i}" in response.choices[0].message.content


def test_streaming_with_usage(gateway):
    stream = client(gateway).chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "Stream this"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert text.startswith("[simulated]") and "Stream this" in text
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0


def test_models_list(gateway):
    ids = {model.id for model in client(gateway).models.list()}
    assert {"gpt-5", "claude-opus-4-1", "gemini-2.5-pro", "grok-4", "simulated"} <= ids


def test_typed_errors(gateway):
    with pytest.raises(openai.AuthenticationError) as err:
        client(gateway, key="sk-wrong").chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
    assert "invalid API key" in str(err.value)
    with pytest.raises(openai.NotFoundError) as err:
        client(gateway).chat.completions.create(model="gpt-99", messages=[{"role": "user", "content": "hi"}])
    assert "not in the catalog" in str(err.value)
    with pytest.raises(openai.BadRequestError) as err:
        client(gateway).chat.completions.create(model="auto", messages=[])
    assert "at least one message" in str(err.value)
    # A real provider without its key: the gateway says which variable to set.
    with pytest.raises(openai.InternalServerError) as err:
        client(gateway).chat.completions.create(model="claude-opus-4-1", messages=[{"role": "user", "content": "hi"}])
    assert "ANTHROPIC_API_KEY" in str(err.value)
