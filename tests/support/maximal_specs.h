#pragma once
// FederationRuns that between them set every field the spec has (some fields exclude others):
// the CRD test checks each against the schema, the spec test round-trips them field by field.

namespace zk0::test {

// Every field pod.overrides may set, in YAML's flow style.
#define EVERY_OVERRIDE                                                                                                  \
  "{metadata: {labels: {x: z}, annotations: {note: hello}}, spec: {priorityClassName: high, priority: 10, "           \
  "affinity: {nodeAffinity: {}}, tolerations: [{key: k, operator: Exists}], nodeSelector: {pool: gpu}, "               \
  "topologySpreadConstraints: [{maxSkew: 1}], schedulerName: s, runtimeClassName: nvidia, "                            \
  "terminationGracePeriodSeconds: 30, imagePullSecrets: [{name: regcred}], dnsConfig: {options: []}}}"

// Between them, these set every field the spec has (some fields exclude others).
inline const char* const kMaximalSpecs[] = {
    R"(apiVersion: zk0.io/v1alpha1
kind: FederationRun
metadata: {name: every-field}
spec:
  rounds: 3
  outputDir: out
  clients:
    - name: a
      dataset: {path: /data/a, episodes: [0, 1]}
      resources: {cpu: 2, gpu: 1, memory: 8Gi}
      pod:
        nodeSelector: {robot: a}
        tolerations: [{key: gpu, operator: Exists, effect: NoSchedule, tolerationSeconds: 5, value: x}]
        affinity: {nodeAffinity: {}}
        overrides: )" EVERY_OVERRIDE R"(
      tls: {certFile: a.crt, keyFile: a.key}
    - name: b
      dataset: {volumeClaim: {claimName: data, subPath: b}}
      tls: {certFile: b.crt, keyFile: b.key}
    - name: c
      dataset: {repoId: owner/set, revision: v1}
      tls: {certFile: c.crt, keyFile: c.key}
    - name: d
      dataset: {synthetic: {task: t, episodes: 3, episodeLength: 10, seed: 1}}
      tls: {certFile: d.crt, keyFile: d.key}
  evaluation: {dataset: {synthetic: {task: e}}, everyRounds: 1, mode: quick, batches: 2, batchSize: 4, seed: 3, contributionScores: {firstOrder: true, leaveOneOut: true}}
  training:
    localSteps: 5
    batchSize: 4
    optimizer: {type: adamw, lr: 0.001, betas: [0.9, 0.95], eps: 1.0e-8, weightDecay: 0.0, state: keep}
    gradClipNorm: 1
    lrSchedule: {type: cosine, minLrRatio: 0.1, warmupSteps: 2}
    precision: bf16
    seed: 1
  strategy:
    type: fedprox
    proximalMu: 0.1
    muSchedule: {type: step, everyRounds: 2, factor: 0.5}
    fractionFit: 1.0
    minFitClients: 2
    minAvailableClients: 2
    startTimeoutSeconds: 10
    roundTimeoutSeconds: 10
    maxRoundAttempts: 2
    maxUpdateNorm: 100
    aggregation: {rule: median}
    clipping: {quantile: 0.9}
    serverOptimizer: {type: adam, lr: 0.05, betas: [0.9, 0.999], tau: 1.0e-4}
  policy: {type: flow-matching-mlp, config: {hiddenDim: 8}, pretrained: /models/x, train: [all]}
  checkpoints: {everyRounds: 1, keepLast: 2, signingKeyFile: /keys/checkpoint}
  transport:
    chunkSize: 1Mi
    maxMessageSize: 2Mi
    transferAttempts: 2
    compression: {codec: int8, blockSize: 256, errorFeedback: false}
    tls: {caFile: ca, certFile: c, keyFile: k, mutual: true}
  aggregator:
    resources: {cpu: 1, memory: 4Gi}
    pod:
      nodeSelector: {a: b}
      tolerations: [{key: k, operator: Equal, value: v, effect: NoExecute, tolerationSeconds: 1}]
      affinity: {podAffinity: {}}
      overrides: )" EVERY_OVERRIDE R"(
    storage: {size: 5Gi, storageClassName: fast}
  runPolicy: {backoffLimit: 1, activeDeadlineSeconds: 60, ttlSecondsAfterFinished: 60, suspend: true}
  hubTokenSecret: {name: hf, key: token}
)",
    R"(apiVersion: zk0.io/v1alpha1
kind: FederationRun
metadata: {name: tls-secret}
spec:
  rounds: 1
  clients: [{name: a, dataset: {path: /a}, tls: {secretName: a-tls}}]
  evaluation:
    sets:
    - {name: heldout, dataset: {repoId: owner/eval, revision: main, episodes: [3]}, mode: full}
    - {name: sponsor-pick, dataset: {volumeClaim: {claimName: sponsor-data, subPath: pick}}, batches: 3, batchSize: 2, seed: 9}
  strategy: {minFitClients: 1, minAvailableClients: 1}
  checkpoints: {signingKeySecret: run-key, keepUpdates: true}
  transport: {tls: {secretName: run-tls, mutual: true}, compression: {codec: topk, fraction: 0.02}}
)",
    R"(apiVersion: zk0.io/v1alpha1
kind: FederationRun
metadata: {name: multi-krum}
spec:
  rounds: 1
  clients: [{name: a, dataset: {path: /a}}, {name: b, dataset: {path: /b}}, {name: c, dataset: {path: /c}},
            {name: d, dataset: {path: /d}}, {name: e, dataset: {path: /e}}]
  evaluation: {dataset: {path: /eval}}
  strategy:
    minFitClients: 5
    minAvailableClients: 5
    aggregation: {rule: multiKrum, byzantine: 1, select: 3}
    clipping: {norm: 50}
    serverOptimizer: {type: avgm, lr: 1.0, momentum: 0.5}
)",
    R"(apiVersion: zk0.io/v1alpha1
kind: FederationRun
metadata: {name: trimmed-mean}
spec:
  rounds: 1
  clients: [{name: a, dataset: {path: /a}}, {name: b, dataset: {path: /b}}, {name: c, dataset: {path: /c}},
            {name: d, dataset: {path: /d}}]
  evaluation: {dataset: {path: /eval}}
  strategy: {minFitClients: 4, minAvailableClients: 4, aggregation: {rule: trimmedMean, trimFraction: 0.25}}
)",
    R"(apiVersion: zk0.io/v1alpha1
kind: FederationRun
metadata: {name: fedbuff}
spec:
  rounds: 20
  clients: [{name: a, dataset: {path: /a}}, {name: b, dataset: {path: /b}}, {name: c, dataset: {path: /c}}]
  evaluation: {dataset: {path: /eval}}
  strategy:
    minFitClients: 2
    minAvailableClients: 3
    asynchronous: {maxStaleness: 4, stalenessWeight: constant}
    clipping: {quantile: 0.8}
    serverOptimizer: {type: avgm, lr: 1.0, momentum: 0.9}
)",
    R"(apiVersion: zk0.io/v1alpha1
kind: FederationRun
metadata: {name: remote}
spec:
  rounds: 2
  clients: [{name: a, dataset: {path: /a}, tls: {certFile: a.crt, keyFile: a.key}}, {name: b, remote: true}]
  evaluation: {dataset: {path: /eval}}
  strategy: {minFitClients: 1, minAvailableClients: 1}
  transport:
    tls: {caFile: ca, certFile: c, keyFile: k, mutual: true, serverName: zk0.example.org}
    join: {caKeyFile: ca.key, tokenKeyFile: join.key, tokenTtlSeconds: 600, certificateTtlSeconds: 7200}
)",
    R"(apiVersion: zk0.io/v1alpha1
kind: FederationRun
metadata: {name: remote-cluster}
spec:
  rounds: 2
  clients: [{name: a, dataset: {volumeClaim: {claimName: a}}}, {name: b, remote: true}]
  evaluation: {dataset: {path: /eval}}
  strategy: {minFitClients: 1, minAvailableClients: 1}
  transport:
    tls: {secretName: agg-tls, mutual: true}
    join: {caSecret: zk0-ca, tokenTtlSeconds: 600}
    expose: {type: LoadBalancer, nodePort: 30551, address: robots.example.org:443}
)",
    R"(apiVersion: zk0.io/v1alpha1
kind: FederationRun
metadata: {name: private}
spec:
  rounds: 3
  clients: [{name: a, dataset: {path: /a}}, {name: b, dataset: {path: /b}}, {name: c, dataset: {path: /c}}]
  evaluation: {dataset: {path: /eval}}
  training: {privacy: {clipNorm: 1.5, noiseMultiplier: 0.9, targetEpsilon: 4, delta: 1.0e-6, insecureNoiseSeed: 3}}
  strategy:
    minAvailableClients: 2
    serverOptimizer: {type: adam, lr: 0.1}
    privacy:
      adaptiveClipping: {initialNorm: 0.5, targetQuantile: 0.5, learningRate: 0.2, countNoiseStd: 2}
      clipOn: worker
      samplingRate: 0.5
      noiseMultiplier: 1.2
      targetEpsilon: 8
      delta: 1.0e-3
      insecureNoiseSeed: 7
)",
    R"(apiVersion: zk0.io/v1alpha1
kind: FederationRun
metadata: {name: private-fixed-clip}
spec:
  rounds: 30
  clients: [{name: a, dataset: {path: /a}}, {name: b, dataset: {path: /b}}]
  evaluation: {dataset: {path: /eval}}
  strategy: {minAvailableClients: 1, privacy: {clipNorm: 0.5, samplingRate: 0.1, targetEpsilon: 3, delta: 1.0e-5}}
)"};



}  // namespace zk0::test
