"""Client of the evaluator service."""

from __future__ import annotations

from marsbench.client._base import BaseClient
from marsbench.schemas.runs import RunCreate, RunList, RunRecord
from marsbench.schemas.search import (
    DEFAULT_THUMBNAIL_PX,
    SearchableCollection,
    SearchableCollectionList,
    SearchRequest,
    SearchResponse,
)


class EvaluatorClient(BaseClient):
    def create_run(self, run: RunCreate) -> RunRecord:
        response = self.request("POST", "/v1/runs", json=run.model_dump(mode="json"))
        return RunRecord.model_validate(response.json())

    def run(self, run_id: str) -> RunRecord:
        return RunRecord.model_validate(self.request("GET", f"/v1/runs/{run_id}").json())

    def artifact(self, run_id: str, name: str) -> bytes:
        """A file listed in a record's `artifacts` (e.g. the geo map PNG)."""
        return self.request("GET", f"/v1/runs/{run_id}/artifacts/{name}").content

    def runs(self) -> list[RunRecord]:
        return RunList.model_validate(self.request("GET", "/v1/runs").json()).data

    def search(self, query: SearchRequest) -> SearchResponse:
        response = self.request("POST", "/v1/search", json=query.model_dump(mode="json"))
        return SearchResponse.model_validate(response.json())

    def collections(self) -> list[SearchableCollection]:
        """Collections to search, with the task, model, dataset and state of each one's indexing."""
        return SearchableCollectionList.model_validate(self.request("GET", "/v1/collections").json()).data

    def point_image(self, collection: str, point_id: str, *, size: int = DEFAULT_THUMBNAIL_PX) -> bytes:
        """A JPEG thumbnail of a stored point's image, read from the dataset it was indexed from."""
        path = f"/v1/collections/{collection}/points/{point_id}/image"
        return self.request("GET", path, params={"size": size}).content
