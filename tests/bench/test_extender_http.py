"""The extender bench's call as shipped (`nodeCacheCapable: true`): the same pod, the candidates
by name."""

from __future__ import annotations

import orjson

from bench.extender_http import names_body
from bench.inputs import extender_args


def test_the_names_body_names_every_node_of_the_whole_body_with_the_same_pod() -> None:
    whole = orjson.loads(extender_args(20, real_labels=True))
    named = orjson.loads(names_body(orjson.dumps(whole)))
    assert named["Pod"] == whole["Pod"]
    assert named["Nodes"] is None
    assert named["NodeNames"] == [node["metadata"]["name"] for node in whole["Nodes"]["items"]]
    assert len(set(named["NodeNames"])) == 20
