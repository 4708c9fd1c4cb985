"""The suite's only fakes: chat models standing in for a hosted LLM, which cannot run here.

They are LangChain's own fake chat models (real streaming and message handling), extended to
record the prompts they are sent and to fail like a provider outage.
"""

from __future__ import annotations

from typing import Any, Iterator

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage


class RecordingFakeChatModel(GenericFakeChatModel):
    """Replies with the given texts in turn and records every prompt it receives."""

    prompts: list = []

    def __init__(self, replies: list[str], **kwargs: Any) -> None:
        super().__init__(messages=iter([AIMessage(content=r) for r in replies]), **kwargs)
        object.__setattr__(self, "prompts", [])

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any):
        self.prompts.append(list(messages))
        return super()._generate(messages, *args, **kwargs)

    def _stream(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Iterator:
        self.prompts.append(list(messages))
        yield from super()._stream(messages, *args, **kwargs)


class FailingFakeChatModel(GenericFakeChatModel):
    """Fails like an unreachable provider; its error message carries a fake API key."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(messages=iter([]), **kwargs)

    def _generate(self, *args: Any, **kwargs: Any):
        raise ConnectionError("provider unreachable (api_key=sk-fakefakefakefake1234)")

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator:
        raise ConnectionError("provider unreachable (api_key=sk-fakefakefakefake1234)")
        yield  # pragma: no cover
