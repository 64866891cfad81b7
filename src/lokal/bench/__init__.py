"""`lokal bench`: latency, throughput, memory and cold start for a model in-process or behind a server.

result.py   the versioned JSON result (written first, rendered second)
metrics.py  pure metric functions over saved samples
target.py   what a benchmark target must do (in-process engine, Ollama API, OpenAI API)
"""
