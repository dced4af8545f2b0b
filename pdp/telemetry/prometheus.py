"""Reading Prometheus through its HTTP query API (`/api/v1/query`).

Only what the control plane asks: instant queries, answered as samples (labels and a value), and
range queries (`/api/v1/query_range`, the console's charts), answered as series.
A failure (unreachable, an HTTP error, a PromQL error, an answer that is not Prometheus's) raises
PrometheusError naming the URL and Prometheus's own message; it never reads as "no data".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx


class PrometheusError(RuntimeError):
    """Prometheus could not answer a query; the message names the server and the reason."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float
    timestamp: float


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    values: tuple[tuple[float, float], ...]  # (timestamp, value), oldest first


class PrometheusClient:
    """`PrometheusClient("http://127.0.0.1:9090").query("up")` -> [Sample(...)]."""

    def __init__(self, url: str, *, timeout: float = 10.0, verify: bool | str = True) -> None:
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise PrometheusError(f"--prometheus {url!r}: expected an http(s)://HOST:PORT URL")
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout, verify=verify)

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def query(self, promql: str, *, at: float | None = None) -> list[Sample]:
        """An instant query; a scalar answer is one sample without labels."""
        form = {"query": promql}
        if at is not None:
            form["time"] = f"{at:.3f}"
        data = self._call("/api/v1/query", form)
        kind, result = data.get("resultType"), data.get("result")
        if kind == "vector" and isinstance(result, list):
            return [_sample(item.get("metric", {}), item.get("value")) for item in result]
        if kind == "scalar":
            return [_sample({}, result)]
        raise PrometheusError(f"{self.url}: {promql!r} answered a {kind!r}, not an instant vector")

    def query_range(self, promql: str, *, start: float, end: float, step: float) -> list[Series]:
        """A range query: each series with its (timestamp, value) pairs from `start` to `end`."""
        form = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        data = self._call("/api/v1/query_range", form)
        kind, result = data.get("resultType"), data.get("result")
        if kind != "matrix" or not isinstance(result, list):
            raise PrometheusError(f"{self.url}: {promql!r} answered a {kind!r}, not a range matrix")
        out = []
        for item in result:
            pairs = [_sample({}, pair) for pair in item.get("values", [])]
            labels = {str(k): str(v) for k, v in dict(item.get("metric", {})).items()}
            out.append(Series(labels, tuple((p.timestamp, p.value) for p in pairs)))
        return out

    def _call(self, path: str, form: dict[str, str]) -> dict[str, Any]:
        # POST (form-encoded) so a long query never meets a URL length limit.
        try:
            response = self._http.post(path, data=form)
        except httpx.HTTPError as exc:
            raise PrometheusError(f"{self.url} is unreachable: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            raise PrometheusError(
                f"{self.url}{path} answered HTTP {response.status_code} without JSON: is it Prometheus?"
            ) from None
        if not isinstance(body, dict):
            raise PrometheusError(f"{self.url}{path} answered something other than a JSON object")
        if body.get("status") != "success":
            kind, reason = body.get("errorType", "error"), body.get("error", response.text[:200])
            raise PrometheusError(f"{self.url}{path}: {kind}: {reason} (query {form.get('query')!r})")
        data = body.get("data")
        if not isinstance(data, dict):
            raise PrometheusError(f"{self.url}{path} answered without data")
        return data


def _sample(labels: Any, pair: Any) -> Sample:
    if not (isinstance(pair, list) and len(pair) == 2):
        raise PrometheusError(f"malformed sample value {pair!r}")
    value = float(pair[1])  # Prometheus sends values as strings: "NaN", "+Inf" included
    return Sample(
        labels={str(k): str(v) for k, v in dict(labels).items()}, value=value, timestamp=float(pair[0])
    )


def finite(samples: list[Sample]) -> list[Sample]:
    """The samples with a number (a ratio over no data is NaN in PromQL)."""
    return [s for s in samples if math.isfinite(s.value)]
