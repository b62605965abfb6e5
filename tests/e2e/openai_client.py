"""The service through the unmodified `openai` client: plain and streamed chat completions, with
the `xiaoguan` extension (citations, handoff) reachable from both."""
import sys

from openai import OpenAI

base, key = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base, api_key=key)

done = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "失业保险金最长能领多久？"}])
text = done.choices[0].message.content
ext = (done.model_extra or {}).get("xiaoguan")
assert text and "失业保险金" in text, text
assert ext and ext["citations"] and ext["handoff"] is False, ext

parts, final = [], None
for chunk in client.chat.completions.create(model="guides", stream=True, messages=[{"role": "user", "content": "工伤认定申请的时限是多久？"}]):
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
    if chunk.choices and chunk.choices[0].finish_reason == "stop":
        final = (chunk.model_extra or {}).get("xiaoguan")
assert "".join(parts), "no streamed text"
assert final and "citations" in final and "handoff" in final, final

# Errors arrive as the library's exceptions, with the service's message.
try:
    client.chat.completions.create(model="no-such-kb", messages=[{"role": "user", "content": "hi"}])
    raise AssertionError("an unknown model must fail")
except Exception as e:  # openai.NotFoundError
    assert "404" in str(e) or "not exist" in str(e), e
print("openai client: ok")
