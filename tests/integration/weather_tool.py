"""The weather tool the server's tool-calling tests offer (OpenAI's chat shape, also what Ollama accepts): a
city of bounded length and a unit from an enum, both required, so a grammar that lets anything else through
shows up as a call the schema refuses."""

from __future__ import annotations

WEATHER_PARAMS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 40},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Current weather in a city", "parameters": WEATHER_PARAMS},
}
