"""The deployment files under deploy/ check out as far as this machine can tell, offline and in seconds.

Each file is read by the parser or validator of the tool that reads it: PyYAML and json for all of them, Ray's
own cluster-config validator for the AWS cluster, the KubeRay RayJob CRD's schema for the RayJob, the Compose
Specification's schema for the MLflow stack, the sweep's own argument parser and search-space loader for the
RayJob's command, and bash for the cluster's shell commands. Nothing here builds an image, reaches AWS or
Kubernetes, or starts a server: deploy/README.md says what was exercised and what only on paper.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DATA = Path(__file__).with_name("data")

AWS_CONFIG = DEPLOY / "aws-gpu.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
RAYJOB = DEPLOY / "kuberay-rayjob.yaml"
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_ENV = DEPLOY / "compose.env.example"
HEAD_ENV = DEPLOY / "aws-head.env.example"
BUCKET_POLICY = DEPLOY / "aws-iam-bucket-policy.json"
HEAD_POLICY = DEPLOY / "aws-iam-head-policy.json"
SECURITY_GROUP = DEPLOY / "aws-security-group.json"
MINIO_POLICY = DEPLOY / "minio-mlflow-policy.json"

DRIVER_CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "PGPASSWORD")  # the driver's only
BUCKET_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")  # every node's: workers upload checkpoints
WORLD = {"0.0.0.0/0", "::/0"}


def load_yaml_documents(path: Path) -> list:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def project_requirements() -> dict[str, Requirement]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {Requirement(line).name: Requirement(line) for line in pyproject["project"]["dependencies"]}


def pinned_ray_version() -> str:
    (spec,) = project_requirements()["ray"].specifier
    assert spec.operator == "==", f"pyproject.toml should pin ray exactly, not {spec}"
    return spec.version


def shell_commands(config: dict) -> list[str]:
    keys = ("setup_commands", "head_setup_commands", "worker_setup_commands", "initialization_commands")
    keys += ("head_start_ray_commands", "worker_start_ray_commands")
    return [command for key in keys for command in config.get(key, [])]


# ---------------------------------------------------------------------------------------------- every file parses
DEPLOY_DATA_FILES = sorted(p for p in DEPLOY.iterdir() if p.suffix in (".yaml", ".yml", ".json"))


def test_deploy_directory_has_the_files_this_test_reads():
    for path in (AWS_CONFIG, DOCKERFILE, RAYJOB, COMPOSE, COMPOSE_ENV, HEAD_ENV, BUCKET_POLICY, HEAD_POLICY):
        assert path.is_file(), path
    assert {p.name for p in DEPLOY_DATA_FILES} >= {"aws-gpu.yaml", "kuberay-rayjob.yaml", "compose.yaml"}


@pytest.mark.parametrize("path", DEPLOY_DATA_FILES, ids=lambda p: p.name)
def test_every_yaml_and_json_file_parses(path):
    if path.suffix == ".json":
        document = json.loads(path.read_text())
        assert isinstance(document, dict | list) and document, path
    else:
        documents = load_yaml_documents(path)
        assert documents and all(isinstance(doc, dict) for doc in documents), path


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as Compose's --env-file and `set -a; . FILE` both read them (no quoting, no spaces)."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(\S*)", line)
        assert match, f"{path.name}:{number}: not KEY=VALUE: {line!r}"
        values[match[1]] = match[2]
    return values


@pytest.mark.parametrize("path", [COMPOSE_ENV, HEAD_ENV], ids=lambda p: p.name)
def test_env_examples_are_plain_assignments(path):
    assert env_file(path), path


# ---------------------------------------------------------------------------------------------------- the image
def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped, as Docker reads them."""
    instructions, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):
            continue  # a comment line inside a continued instruction
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        keyword, _, rest = text.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def dockerfile_args() -> dict[str, str]:
    return dict(rest.split("=", 1) for keyword, rest in dockerfile_instructions() if keyword == "ARG" and "=" in rest)


def test_image_pins_ray_exactly_as_pyproject_and_torch_inside_its_range():
    args = dockerfile_args()
    requirements = project_requirements()
    assert args["RAY_VERSION"] == pinned_ray_version()
    assert Version(args["TORCH_VERSION"]) in requirements["torch"].specifier, (args, requirements["torch"])
    runs = " ".join(rest for keyword, rest in dockerfile_instructions() if keyword == "RUN")
    assert '"torch==${TORCH_VERSION}"' in runs
    assert re.search(r'"ray\[[a-z,]*tune[a-z,]*\]==\$\{RAY_VERSION\}"', runs), "ray[tune] at the pinned version"
    assert re.search(r'"ray\[[a-z,]*default[a-z,]*\]', runs), "ray[default]: the job API that a RayJob submits to"


def test_image_installs_the_project_with_pip_and_runs_as_a_non_root_user():
    instructions = dockerfile_instructions()
    assert instructions[0][0] == "FROM"
    runs = [rest for keyword, rest in instructions if keyword == "RUN"]
    assert any(re.search(r"pip install .*(\s|^)\.(\s|$)", run) for run in runs), "pip install . (the project)"
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]
    assert instructions[-1][0] in ("CMD", "ENTRYPOINT") and instructions.index(("USER", users[-1])) > max(
        i for i, (keyword, _) in enumerate(instructions) if keyword == "RUN"
    ), "USER after the last RUN"


def dockerignore_admits(relative: str, patterns: list[str]) -> bool:
    """Docker's rule for a top-level path: the last matching pattern decides, '!' re-includes."""
    admitted = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern[1:] if negated else pattern
        if re.fullmatch(body.replace(".", r"\.").replace("**/", "(.*/)?").replace("*", "[^/]*"), relative):
            admitted = negated
    return admitted


def test_image_copies_what_exists_and_what_its_dockerignore_admits():
    ignore = DOCKERFILE.with_name("Dockerfile.dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    copied = []
    for keyword, rest in dockerfile_instructions():
        if keyword == "COPY":
            sources = [word for word in rest.split() if not word.startswith("--")][:-1]
            copied += sources
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert dockerignore_admits(source, patterns), f"COPY {source}: excluded by Dockerfile.dockerignore"
    assert not dockerignore_admits(".venv", patterns) and not dockerignore_admits(".git", patterns)
    # The packages that pyproject installs and the space that the RayJob runs are in the image.
    assert {"pyproject.toml", "trainer", "orchestrator", "search_spaces"} <= set(copied)


def test_cluster_setup_commands_pin_the_same_ray_and_a_torch_inside_the_range():
    commands = " ".join(shell_commands(yaml.safe_load(AWS_CONFIG.read_text())))
    torch = re.search(r'"torch==([^"]+)"', commands)
    ray = re.search(r'"ray\[[^\]]*\]==([^"]+)"', commands)
    assert torch and ray, commands
    assert Version(torch[1]) in project_requirements()["torch"].specifier
    assert ray[1] == pinned_ray_version() == dockerfile_args()["RAY_VERSION"]


# ----------------------------------------------------------------------------------------------------- the RayJob
def rayjob_documents() -> tuple[dict, dict]:
    documents = load_yaml_documents(RAYJOB)
    (job,) = [doc for doc in documents if doc.get("kind") == "RayJob"]
    (claim,) = [doc for doc in documents if doc.get("kind") == "PersistentVolumeClaim"]
    return job, claim


def crd_schema() -> dict:
    return json.loads((DATA / "kuberay_rayjob_v1_schema.json").read_text())


def strict(schema: dict) -> dict:
    """kubectl's strict field validation (its default since Kubernetes 1.27): a field that the schema does not
    know is an error, except under x-kubernetes-preserve-unknown-fields."""
    schema = copy.deepcopy(schema)

    def visit(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                if not node.get("x-kubernetes-preserve-unknown-fields"):
                    node["additionalProperties"] = False
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    return schema


def crd_errors(document: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(strict(crd_schema()["openAPIV3Schema"]))
    return [f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(document)]


def trimmed_paths(schema: dict, value, path: str = "") -> list[str]:
    """Paths of the manifest whose schema the vendored copy trimmed away (so were not validated)."""
    if schema == {"$comment": "trimmed"}:
        return [path]
    found = []
    if isinstance(value, dict):
        for key, sub in value.items():
            if key in schema.get("properties", {}):
                found += trimmed_paths(schema["properties"][key], sub, f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                found += trimmed_paths(schema["additionalProperties"], sub, f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += trimmed_paths(schema["items"], item, f"{path}[{index}]")
    return found


def test_rayjob_validates_against_the_kuberay_crd_schema():
    job, _ = rayjob_documents()
    schema = crd_schema()
    assert job["apiVersion"] == f"{schema['group']}/{schema['version']}" and job["kind"] == schema["kind"]
    assert crd_errors(job) == []
    stale = trimmed_paths(schema["openAPIV3Schema"], job)
    assert stale == [], f"rerun tests/data/trim_kuberay_crd.py: the vendored schema lacks {stale}"


def test_the_crd_check_rejects_an_unknown_field_and_a_wrong_type():
    job, _ = rayjob_documents()
    misspelt = copy.deepcopy(job)
    misspelt["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["maxReplica"] = 4
    assert any("maxReplica" in error for error in crd_errors(misspelt))
    wrong = copy.deepcopy(job)
    wrong["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0  # must be a string
    assert crd_errors(wrong)


def containers(job: dict) -> dict[str, dict]:
    cluster = job["spec"]["rayClusterSpec"]
    groups = {"head": cluster["headGroupSpec"], **{g["groupName"]: g for g in cluster["workerGroupSpecs"]}}
    return {name: group["template"]["spec"]["containers"][0] for name, group in groups.items()}


def mounts_of_claim(pod_spec: dict, container: dict, claim: str) -> list[str]:
    volumes = {
        v["name"] for v in pod_spec.get("volumes", []) if v.get("persistentVolumeClaim", {}).get("claimName") == claim
    }
    return [m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] in volumes]


def sweep_arguments(entrypoint: str):
    """The entrypoint's sweep command, parsed by the sweep's own parser."""
    from orchestrator.sweep import build_parser

    words = shlex.split(entrypoint)
    start = words.index("python")
    assert words[start : start + 3] == ["python", "-m", "orchestrator.sweep"], words
    before = " ".join(words[:start])
    assert before in ("", "cd /home/ray/dss-sweep &&", "RAY_AUTH_MODE=token"), (
        f"unexpected before the sweep: {before!r}"
    )
    return build_parser().parse_args(words[start + 3 :])


def as_tested(args) -> dict:
    """The sweep that tests/test_ray_job.py submits as the team's Ray job, with the places (space, folders, bucket,
    servers, trials at once) that `args` names: what a deploy file's sweep must parse to."""
    from test_ray_job import team_sweep

    from orchestrator.sweep import build_parser

    options = team_sweep(
        args.space, args.out, args.storage, args.tracking_uri, args.optuna_storage, args.max_concurrent
    )
    return vars(build_parser().parse_args([str(option) for option in options]))


def test_rayjob_runs_the_team_sweep_that_the_ray_job_test_submits():
    job, _ = rayjob_documents()
    args = sweep_arguments(job["spec"]["entrypoint"])
    assert args.overrides == ["resources.gpus=1"], "one trial per GPU"
    assert {**vars(args), "overrides": []} == as_tested(args)


def test_rayjob_keeps_the_output_on_the_heads_volume_and_the_checkpoints_in_a_bucket():
    from orchestrator.space import load_space

    job, claim = rayjob_documents()
    args = sweep_arguments(job["spec"]["entrypoint"])
    assert str(args.space) == "search_spaces/ner.yaml" and args.address == "auto"
    assert args.max_failures >= 1, "pods can vanish: retry a trial from its checkpoint"
    assert args.storage.startswith("s3://"), "every node reaches the bucket"
    assert args.tracking_uri.startswith("https://") and args.optuna_storage.startswith("postgresql://")

    cluster = job["spec"]["rayClusterSpec"]
    head_pod = cluster["headGroupSpec"]["template"]["spec"]
    (head_mount,) = mounts_of_claim(head_pod, head_pod["containers"][0], claim["metadata"]["name"])
    assert str(args.out).startswith(head_mount + "/"), "a retry's new head finds the sweep's output again"
    for group in cluster["workerGroupSpecs"]:
        pod = group["template"]["spec"]
        assert mounts_of_claim(pod, pod["containers"][0], claim["metadata"]["name"]) == [], group

    space = load_space(ROOT / args.space, args.overrides)  # the --set overrides are valid for the space
    gpus = sum(
        group["replicas"] * int(group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
        for group in cluster["workerGroupSpecs"]
    )
    assert space.resources.gpus > 0 and args.max_concurrent * space.resources.gpus <= gpus
    head = containers(job)["head"]
    assert "nvidia.com/gpu" not in head["resources"].get("limits", {})
    assert cluster["headGroupSpec"]["rayStartParams"].get("num-cpus") == "0", "no trials on the head"


def test_rayjob_image_matches_the_pinned_ray_and_runs_as_non_root():
    job, _ = rayjob_documents()
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"] == pinned_ray_version()
    assert len({c["image"] for c in containers(job).values()}) == 1, "head and workers run the same image"
    assert next(iter(containers(job).values()))["image"].split("/")[-1].startswith("dss-sweep:")
    pods = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
    for group in pods:
        assert group["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_rayjob_reads_every_credential_from_a_secret_and_gives_workers_only_the_buckets():
    job, _ = rayjob_documents()
    args = sweep_arguments(job["spec"]["entrypoint"])
    for url in (args.tracking_uri, args.optuna_storage):
        assert "@" not in url or ":" not in url.split("://", 1)[1].split("@", 1)[0], f"a password in {url}"
    for name, container in containers(job).items():
        env = {item["name"]: item for item in container.get("env", [])}
        expected = {*DRIVER_CREDENTIALS, *BUCKET_CREDENTIALS} if name == "head" else set(BUCKET_CREDENTIALS)
        assert set(env) == expected, f"{name}: workers never talk to MLflow or Optuna"
        for variable in env.values():
            assert "value" not in variable and variable["valueFrom"]["secretKeyRef"]["key"] == variable["name"]


# ------------------------------------------------------------------------------------------- deploy/README.md
def readme_ray_job() -> tuple[str, str]:
    """The `ray job submit` of deploy/README.md's section 4: the pattern its command exports credentials with from
    the server's settings file, and its sweep command."""
    text = (DEPLOY / "README.md").read_text()
    script = re.search(r"ray job submit --address \S+ --no-wait -- bash -c '(.*?)'\n", text, re.DOTALL)[1]
    exports, sweep = script.replace("\\\n", " ").split("&&")
    return re.fullmatch(r'\s*export \$\(grep -E "([^"]+)" ~/mlflow/server.env \| xargs\)\s*', exports)[1], sweep


def test_the_readmes_ray_job_exports_what_the_tested_job_exports_and_runs_the_team_sweep():
    from test_ray_job import EXPORTED

    pattern, sweep = readme_ray_job()
    assert pattern == EXPORTED
    args = sweep_arguments(sweep)
    assert vars(args) == as_tested(args)


# ----------------------------------------------------------------------------------------- the MLflow compose stack
VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(node, env: dict[str, str]):
    """Compose's variable interpolation of every string value: $$ escapes, ${V}, ${V:-default}, ${V:?error}."""
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, env) for value in node]
    if not isinstance(node, str):
        return node

    def substitute(match):
        if match["escaped"]:
            return "$"
        name, op, arg = match["braced"] or match["plain"], match["op"], match["arg"]
        value = env.get(name)
        if op in (":?", "?") and (value is None or (op == ":?" and value == "")):
            raise KeyError(f"{name}: {arg}")
        if op == ":-" and not value or op == "-" and value is None:
            return arg
        return value or ""

    return VARIABLE.sub(substitute, node)


def compose_variables(node) -> set[str]:
    if isinstance(node, dict):
        return set().union(*(compose_variables(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(compose_variables(value) for value in node))
    if isinstance(node, str):
        return {m["braced"] or m["plain"] for m in VARIABLE.finditer(node) if not m["escaped"]}
    return set()


def filled_compose_env() -> dict[str, str]:
    """The example env file with its empty secrets filled, as an operator would."""
    return {key: value or f"test-{key.lower()}-0123456789" for key, value in env_file(COMPOSE_ENV).items()}


def compose_config() -> dict:
    return interpolate(yaml.safe_load(COMPOSE.read_text()), filled_compose_env())


def test_compose_file_validates_against_the_compose_specification():
    schema = json.loads((DATA / "compose-spec.json").read_text())
    errors = [
        f"{list(e.absolute_path)}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(compose_config())
    ]
    assert errors == []


def test_compose_takes_every_variable_from_the_env_file_and_refuses_to_start_without_secrets():
    raw = yaml.safe_load(COMPOSE.read_text())
    example = env_file(COMPOSE_ENV)
    assert compose_variables(raw) <= set(example), compose_variables(raw) - set(example)
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        interpolate(raw, example)  # the example as shipped: empty secrets stop `docker compose up`


def command_flags(words: list[str]) -> dict[str, str]:
    flags, index = {}, 0
    while index < len(words):
        word = words[index]
        if word.startswith("--"):
            name, has_value, value = word.partition("=")
            if not has_value and index + 1 < len(words) and not words[index + 1].startswith("--"):
                value, index = words[index + 1], index + 1
            flags[name] = value
        index += 1
    return flags


def test_compose_mlflow_server_uses_postgres_serves_minio_artifacts_and_basic_auth():
    services = compose_config()["services"]
    assert {"postgres", "minio", "mlflow"} <= set(services)
    flags = command_flags(services["mlflow"]["command"])
    assert flags["--app-name"] == "basic-auth"
    assert "--serve-artifacts" in flags
    backend = flags["--backend-store-uri"]
    assert re.fullmatch(r"postgresql(\+\w+)?://[^:@/]+@postgres:5432/\w+", backend), f"no password in {backend}"
    assert services["mlflow"]["environment"]["PGPASSWORD"] == services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    bucket = re.fullmatch(r"s3://([a-z0-9.-]+)/?.*", flags["--artifacts-destination"])[1]
    assert f"local/{bucket}" in services["minio-init"]["command"][0], "the bucket that minio-init creates"
    assert set(s3_buckets(json.loads(MINIO_POLICY.read_text()))) == {bucket}
    assert services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert services["mlflow"]["environment"]["AWS_ACCESS_KEY_ID"] != services["minio"]["environment"]["MINIO_ROOT_USER"]


def test_compose_publishes_only_mlflow_and_only_on_loopback_by_default():
    services = compose_config()["services"]
    for name, service in services.items():
        if name != "mlflow":
            assert "ports" not in service, f"{name} publishes a port"
    (published,) = services["mlflow"]["ports"]
    assert published == "127.0.0.1:5000:5000"


# --------------------------------------------------------------------------------------------- the AWS cluster
def aws_config() -> dict:
    return yaml.safe_load(AWS_CONFIG.read_text())


def test_aws_config_passes_rays_own_validator():
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(aws_config()))


def test_rays_validator_is_not_a_rubber_stamp():
    from ray.autoscaler._private.util import prepare_config, validate_config

    broken = aws_config()
    broken["available_node_types"]["gpu_worker"]["max_worker"] = 4  # misspelt
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        validate_config(prepare_config(broken))


def test_every_node_type_has_its_own_instance_profile_and_the_clusters_security_group():
    """With these present, Ray's AWS bootstrap (ray/autoscaler/_private/aws/config.py: _configure_iam_role,
    _configure_security_group) creates neither its default role (EC2 and S3 full access) nor its default group
    (SSH from 0.0.0.0/0, added even to a provider.security_group's own rules)."""
    config = aws_config()
    assert "security_group" not in config["provider"], "Ray adds SSH from 0.0.0.0/0 to provider.security_group"
    profiles, groups = {}, set()
    for name, node_type in config["available_node_types"].items():
        node = node_type["node_config"]
        profiles[name] = node["IamInstanceProfile"]["Arn"]
        groups.add(tuple(node["SecurityGroupIds"]))
    head = config["head_node_type"]
    assert len(set(profiles.values())) == len(profiles), "the head and the workers have different roles"
    assert profiles[head].endswith(":instance-profile/dss-sweep-head")
    assert len(groups) == 1 and len(next(iter(groups))) == 1


def iam_statements(path: Path) -> list[dict]:
    policy = json.loads(path.read_text())
    assert policy["Version"] == "2012-10-17"
    statements = policy["Statement"]
    assert all(s["Effect"] == "Allow" for s in statements)
    return [{**s, "Action": as_list(s["Action"]), "Resource": as_list(s["Resource"])} for s in statements]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def s3_buckets(policy: dict) -> list[str]:
    resources = [r for s in policy["Statement"] for r in as_list(s["Resource"]) if r.startswith("arn:aws:s3:::")]
    return sorted({r.removeprefix("arn:aws:s3:::").split("/")[0] for r in resources})


def test_bucket_policy_names_one_bucket_and_no_wildcard_but_its_objects():
    statements = iam_statements(BUCKET_POLICY)
    (bucket,) = s3_buckets(json.loads(BUCKET_POLICY.read_text()))
    allowed = {
        f"arn:aws:s3:::{bucket}": {"s3:ListBucket"},
        f"arn:aws:s3:::{bucket}/*": {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"},
    }
    for statement in statements:
        for resource in statement["Resource"]:
            assert resource in allowed, f"{resource}: only the bucket and its objects"
            assert set(statement["Action"]) <= allowed[resource], statement
            assert not any("*" in action for action in statement["Action"]), statement
    granted = {r: set(s["Action"]) for s in statements for r in s["Resource"]}
    assert granted == allowed


def test_the_bucket_of_the_policy_is_the_bucket_of_mlflows_artifacts():
    (bucket,) = s3_buckets(json.loads(BUCKET_POLICY.read_text()))
    mlflow = [c for c in shell_commands(aws_config()) if "mlflow server" in c]
    assert len(mlflow) == 1 and f"--artifacts-destination s3://{bucket}/" in mlflow[0]


def test_head_policy_lets_the_autoscaler_manage_only_this_clusters_instances():
    config = aws_config()
    cluster, region = config["cluster_name"], config["provider"]["region"]
    statements = iam_statements(HEAD_POLICY)
    worker_profile = config["available_node_types"]["gpu_worker"]["node_config"]["IamInstanceProfile"]["Arn"]
    (security_group,) = config["available_node_types"]["gpu_worker"]["node_config"]["SecurityGroupIds"]
    for statement in statements:
        actions, resources = statement["Action"], statement["Resource"]
        assert not any(a.startswith("s3:") for a in actions), "the bucket is the bucket policy's, nobody else's"
        assert not any(a.endswith("*") for a in actions), statement
        if "*" in resources:
            # AWS offers no resource-level permissions for Describe*: the only unscoped statement.
            assert resources == ["*"] and all(a.startswith("ec2:Describe") for a in actions), statement
            continue
        for resource in resources:
            assert resource.split(":")[3] in (region, ""), f"{resource}: not in {region}"
        condition = json.dumps(statement.get("Condition", {}))
        if "ec2:TerminateInstances" in actions:
            assert f'"ec2:ResourceTag/ray-cluster-name": "{cluster}"' in condition
        if "ec2:RunInstances" in actions and any(":instance/" in r for r in resources):
            assert f'"aws:RequestTag/ray-cluster-name": "{cluster}"' in condition
        if "ec2:RunInstances" in actions:
            groups = [r for r in resources if ":security-group/" in r]
            assert all(r.endswith(f":security-group/{security_group}") for r in groups), groups
        if "iam:PassRole" in actions:
            role = worker_profile.replace(":instance-profile/", ":role/")
            assert resources == [role], "the head passes the worker role and no other"
        if "ec2:CreateTags" in actions:
            assert "ec2:CreateAction" in condition or "ray-cluster-name" in condition
    ssm = [r for s in statements for r in s["Resource"] if r.startswith("arn:aws:ssm:")]
    (parameter,) = ssm
    name = parameter.split(":parameter", 1)[1]
    fetch = [c for c in config["head_start_ray_commands"] if f"Name='{name}'" in c]
    assert len(fetch) == 1 and f"region_name='{region}'" in fetch[0], "the head reads the parameter of the policy"


def test_security_group_admits_ssh_from_one_operator_range_and_the_cluster_itself():
    rules = json.loads(SECURITY_GROUP.read_text())
    (group,) = aws_config()["available_node_types"]["head"]["node_config"]["SecurityGroupIds"]
    for rule in rules:
        cidrs = [r["CidrIp"] for r in rule.get("IpRanges", [])] + [r["CidrIpv6"] for r in rule.get("Ipv6Ranges", [])]
        assert not set(cidrs) & WORLD, rule
        assert not rule.get("PrefixListIds"), rule
        if cidrs:  # from outside the cluster: SSH only
            assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 22, 22), rule
            assert cidrs == ["OPERATOR-CIDR"], "a placeholder for the operator's own address range"
        else:
            assert [pair["GroupId"] for pair in rule["UserIdGroupPairs"]] == [group], rule


def test_mlflow_server_on_the_head_listens_on_loopback_with_basic_auth():
    config = aws_config()
    (command,) = [c for c in shell_commands(config) if "mlflow server" in c]
    assert command in config["head_start_ray_commands"], "the MLflow server runs on the head only"
    server = shlex.split(re.search(r"exec (mlflow server [^']*)'", command)[1])
    flags = command_flags(server[2:])
    assert flags["--host"] == "127.0.0.1" and flags["--app-name"] == "basic-auth" and "--serve-artifacts" in flags
    dashboard = [c for c in config["head_start_ray_commands"] if "ray start --head" in c]
    assert dashboard and "--dashboard-host=127.0.0.1" in dashboard[0]


def test_both_mlflow_servers_get_what_the_basic_auth_app_refuses_to_start_without():
    from mlflow.environment_variables import MLFLOW_AUTH_ADMIN_PASSWORD, MLFLOW_FLASK_SERVER_SECRET_KEY

    required = {MLFLOW_AUTH_ADMIN_PASSWORD.name, MLFLOW_FLASK_SERVER_SECRET_KEY.name}
    assert required <= set(compose_config()["services"]["mlflow"]["environment"])
    head = env_file(HEAD_ENV)
    assert required <= set(head), "the head's server reads them from the SSM parameter (aws-head.env.example)"
    assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_BACKEND_STORE_URI"} <= set(head)


def test_every_node_starts_ray_with_token_authentication():
    config = aws_config()
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in config.get(key, []) if "ray start" in c]
        assert len(starts) == 1 and "RAY_AUTH_MODE=token ray start" in starts[0], (key, starts)


def test_every_shell_command_of_the_cluster_config_is_valid_bash():
    for command in shell_commands(aws_config()):
        checked = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
        assert checked.returncode == 0, f"{command}\n{checked.stderr}"


# ------------------------------------------------------------------------------------------------------- secrets
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE_KEY", re.IGNORECASE)
REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*")
PLACEHOLDER = re.compile(r"(YOUR-)?[A-Z_-]*(PASSWORD|SECRET|TOKEN)[A-Z_-]*")  # e.g. PASSWORD in the README


def is_literal_secret(value: str) -> bool:
    """A value that would be a secret written into the file: not empty, not a ${VAR} reference (VAR where
    secrets_in_text replaced one), not a placeholder in capitals, not a path to a file that holds the secret."""
    value = value.strip().strip("'\"()")
    if not re.search(r"[A-Za-z0-9]", value) or value == "VAR" or REFERENCE.fullmatch(value):
        return False
    return not PLACEHOLDER.fullmatch(value) and not value.startswith(("/", "~/", "./", "file://"))


def secret_assignments(node, found: list[str]) -> list[str]:
    """Secret-looking settings with literal values anywhere in a parsed YAML or JSON document: mapping entries,
    Kubernetes env items ({name, value}), and NAME=value, --password and URL passwords inside strings."""
    if isinstance(node, dict):
        if isinstance(node.get("name"), str) and "value" in node and SECRET_NAME.search(node["name"]):
            if is_literal_secret(str(node["value"])):
                found.append(f"{node['name']}: {node['value']}")
        for key, value in node.items():
            if isinstance(value, str | int | float) and SECRET_NAME.search(str(key)) and is_literal_secret(str(value)):
                found.append(f"{key}: {value}")
            secret_assignments(value, found)
    elif isinstance(node, list):
        for value in node:
            secret_assignments(value, found)
    elif isinstance(node, str):
        found += secrets_in_text(node)
    return found


def secrets_in_text(text: str) -> list[str]:
    found = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        bare = REFERENCE.sub("VAR", line)  # ${POSTGRES_USER:-mlflow} would read as user:password
        pairs = re.findall(r"(?:^|[\s;&\[,{])([A-Za-z_][A-Za-z0-9_-]*)(?:=|:\s)\s*([^\s,}\]]+)", bare)
        pairs += re.findall(r"(?:^|\s)--([A-Za-z][A-Za-z0-9_-]*)\s+([^\s-]\S*)", bare)
        for name, value in pairs:
            if SECRET_NAME.search(name) and is_literal_secret(value):
                found.append(line.strip())
        for password in re.findall(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:([^/\s@]+)@", bare):
            if is_literal_secret(password):
                found.append(line.strip())
    return found


def plaintext_secrets(path: Path) -> list[str]:
    text = path.read_text()
    if path.suffix in (".yaml", ".yml", ".json"):
        parsed = [json.loads(text)] if path.suffix == ".json" else load_yaml_documents(path)
        return secret_assignments(parsed, [])
    return secrets_in_text(text)


def test_the_secret_scan_finds_planted_secrets(tmp_path):
    planted = {
        "a.yaml": "services: {db: {environment: {POSTGRES_PASSWORD: hunter22}}}",
        "b.yaml": "env: [{name: MLFLOW_TRACKING_PASSWORD, value: hunter22}]",
        "c.yaml": "command: [mlflow, server, --backend-store-uri=postgresql://mlflow:hunter22@db:5432/mlflow]",
        "d.yaml": "setup_commands: [MLFLOW_AUTH_ADMIN_PASSWORD=hunter22 mlflow server]",
        "Dockerfile": "ENV MLFLOW_TRACKING_PASSWORD=hunter22",
        "e.json": '{"Statement": [{"Sid": "x", "secret_token": "hunter22"}]}',
    }
    for name, text in planted.items():
        (tmp_path / name).write_text(text)
        assert plaintext_secrets(tmp_path / name), name
    clean = "environment: {POSTGRES_PASSWORD: '${POSTGRES_PASSWORD:?set it}', URL: 'http://${U}:${P}@minio:9000'}"
    (tmp_path / "clean.yaml").write_text(clean)
    assert plaintext_secrets(tmp_path / "clean.yaml") == []


@pytest.mark.parametrize("path", sorted(p for p in DEPLOY.iterdir() if p.is_file()), ids=lambda p: p.name)
def test_no_plaintext_passwords_in_deploy_files(path):
    if path.name.endswith(".env.example"):
        secrets = {k: v for k, v in env_file(path).items() if SECRET_NAME.search(k)}
        assert secrets and all(value == "" for value in secrets.values()), secrets
        return
    assert plaintext_secrets(path) == []
