"""`lokal audit`: bias probes and group fairness with confidence intervals; results feed `lokal card`.

result.py            the versioned audit result (written first, rendered second)
suite.py             what a suite gets (a Scorer, a RawLog) and returns; the shared errors
scorers.py           the model as suites see it: in-process, OpenAI API (prompt log-probs), Ollama API
stats.py             bootstrap confidence intervals shared by every suite
run.py               one `lokal audit MODEL` run over the chosen suites
occupations.py       built-in counterfactual occupations probe (+ occupations_data.py)
generation.py        built-in generation probe scored with VADER
crows_pairs.py, winobias.py, winogender.py, bbq.py   dataset suites (files the user points at; _choice.py)
fairness.py          group fairness from labelled predictions, with fairlearn
"""
