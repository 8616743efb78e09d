#!/usr/bin/env python3
"""Validates Kubernetes manifests against the strict JSON schemas of Kubernetes v1.30 and the
prometheus-operator CRDs (../shared/fixtures/redacid_k8s-json-scheme). Reads YAML or JSON
documents from the files named (or stdin), prints one line per problem naming kind/name and the
field path, and exits 1 if any document is invalid or of a kind without a schema."""
import json
import os
import sys

import jsonschema
import yaml

SCHEMAS = {
    ("v1", "Pod"): "pod-v1.json",
    ("v1", "Service"): "service-v1.json",
    ("v1", "ConfigMap"): "configmap-v1.json",
    ("v1", "Secret"): "secret-v1.json",
    ("v1", "ServiceAccount"): "serviceaccount-v1.json",
    ("v1", "PersistentVolumeClaim"): "persistentvolumeclaim-v1.json",
    ("v1", "Namespace"): "namespace-v1.json",
    ("apps/v1", "Deployment"): "deployment-apps-v1.json",
    ("rbac.authorization.k8s.io/v1", "Role"): "role-rbac-v1.json",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rolebinding-rbac-v1.json",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "role-rbac-v1.json",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "rolebinding-rbac-v1.json",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicy-networking-v1.json",
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): "customresourcedefinition-apiextensions-v1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring-v1.json",
}


# Kinds without a strict schema in the fixtures: checked against the Kubernetes 1.30 OpenAPI
# definitions (../shared/fixtures/kubernetes-client_python), which type every field but allow
# unknown ones.
OPENAPI_DEFINITIONS = {
    ("policy/v1", "PodDisruptionBudget"): "io.k8s.api.policy.v1.PodDisruptionBudget",
    ("coordination.k8s.io/v1", "Lease"): "io.k8s.api.coordination.v1.Lease",
}


def openapi_schema(definition, cache={}):
    if "defs" not in cache:
        path = os.path.join(schema_dir(), "..", "..", "kubernetes-client_python", "release-1.30", "kubernetes",
                            "swagger.json.unprocessed")
        with open(path) as f:
            defs = json.load(f)["definitions"]
        defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {"type": ["integer", "string"]}
        cache["defs"] = defs
    return {"$ref": "#/definitions/" + definition, "definitions": cache["defs"]}


def schema_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    shared = os.environ.get("ZK0_SHARED", os.path.join(here, "..", "..", "..", "shared"))
    return os.path.join(shared, "fixtures", "redacid_k8s-json-scheme", "v1.30.0-standalone-strict")


def load(schema_file, cache={}):
    if schema_file not in cache:
        with open(os.path.join(schema_dir(), schema_file)) as f:
            cache[schema_file] = json.load(f)
    return cache[schema_file]


def main():
    texts = [open(p).read() for p in sys.argv[1:]] or [sys.stdin.read()]
    problems, checked = [], 0
    for text in texts:
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            docs = doc["items"] if doc.get("kind", "").endswith("List") and "items" in doc else [doc]
            for d in docs:
                kind, version = d.get("kind"), d.get("apiVersion")
                name = d.get("metadata", {}).get("name", "?")
                key = (version, kind)
                if key in OPENAPI_DEFINITIONS:
                    for err in jsonschema.Draft4Validator(openapi_schema(OPENAPI_DEFINITIONS[key])).iter_errors(d):
                        problems.append(f"{kind}/{name}: {'.'.join(str(p) for p in err.absolute_path)}: {err.message[:300]}")
                    checked += 1
                    continue
                if key not in SCHEMAS:
                    problems.append(f"{kind}/{name}: no schema for {version} {kind}")
                    continue
                if kind in ("ClusterRole", "ClusterRoleBinding"):
                    # Same shape as Role/RoleBinding (the fixture set has no Cluster* files).
                    d = dict(d, kind=kind[len("Cluster"):])
                validator = jsonschema.Draft7Validator(load(SCHEMAS[key]))
                for err in validator.iter_errors(d):
                    path = ".".join(str(p) for p in err.absolute_path)
                    problems.append(f"{kind}/{name}: {path}: {err.message[:300]}")
                checked += 1
    for p in problems:
        print(p)
    print(f"checked {checked} manifests, {len(problems)} problems")
    return 1 if problems or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
