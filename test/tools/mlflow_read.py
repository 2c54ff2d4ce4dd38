"""Reads back what mlpipe wrote to MLflow, with MLflow's own Python client, and prints it as JSON.

usage: mlflow_read.py <tracking uri> <experiment name> [registered model name] [artifact path]
"""
import json
import sys

from mlflow.tracking import MlflowClient


def main():
    uri, experiment = sys.argv[1], sys.argv[2]
    model = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None
    artifact = sys.argv[4] if len(sys.argv) > 4 else None
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    out = {"experiment": None, "runs": [], "model": None}
    if exp is None:
        print(json.dumps(out))
        return
    out["experiment"] = {"id": exp.experiment_id, "name": exp.name}
    for run in client.search_runs([exp.experiment_id], max_results=10000):
        histories = {
            key: [[m.step, m.value, m.timestamp] for m in client.get_metric_history(run.info.run_id, key)]
            for key in run.data.metrics
        }
        out["runs"].append(
            {
                "id": run.info.run_id,
                "name": run.info.run_name,
                "status": run.info.status,
                "artifact_uri": run.info.artifact_uri,
                "params": run.data.params,
                "tags": run.data.tags,
                "metrics": run.data.metrics,
                "history": histories,
                "artifacts": [a.path for a in client.list_artifacts(run.info.run_id) if not a.is_dir]
                + [a.path for a in client.list_artifacts(run.info.run_id, "model")],
            }
        )
    if model:
        versions = client.search_model_versions(f"name='{model}'")
        registered = client.get_registered_model(model)
        out["model"] = {
            "versions": [{"version": v.version, "run_id": v.run_id, "source": v.source, "status": v.status} for v in versions],
            "aliases": dict(registered.aliases),
        }
        if artifact and versions:
            run_id = versions[0].run_id
            path = client.download_artifacts(run_id, artifact)
            with open(path, "rb") as f:
                out["model"]["artifact_hex_sha256"] = __import__("hashlib").sha256(f.read()).hexdigest()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
