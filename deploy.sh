#!/usr/bin/env bash
# Deploys the gateway to Google Cloud Run, IAM-only, with provider keys in Secret Manager.
# Idempotent: run it again to update. `--dry-run` prints every command instead of running it.
#
#   PROJECT=my-project ./deploy.sh [--dry-run] [--region R] [--service NAME] [--cpu N]
#       [--memory SIZE] [--concurrency N] [--min-instances N] [--max-instances N]
#
# Provider keys are taken from whichever of these are set in the environment; their values are
# sent to Secret Manager on stdin and never printed:
#   OPENAI_API_KEY ANTHROPIC_API_KEY GEMINI_API_KEY XAI_API_KEY MISTRAL_API_KEY GROQ_API_KEY
# GATEWAY_API_KEYS, if set, is stored the same way and makes the gateway require its own keys
# on top of Cloud Run's IAM check (per-key budgets, rate limits and usage reports).
set -euo pipefail

project="${PROJECT:-}"
region="${REGION:-us-central1}"
service="${SERVICE:-ai-gateway}"
cpu=1
memory=512Mi
concurrency=80
min_instances=0
max_instances=10
dry_run=0

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --project) project="$2"; shift ;;
    --region) region="$2"; shift ;;
    --service) service="$2"; shift ;;
    --cpu) cpu="$2"; shift ;;
    --memory) memory="$2"; shift ;;
    --concurrency) concurrency="$2"; shift ;;
    --min-instances) min_instances="$2"; shift ;;
    --max-instances) max_instances="$2"; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown option: $1" >&2; usage 2 ;;
  esac
  shift
done
[ -n "$project" ] || { echo "set PROJECT (or pass --project) to the Google Cloud project id" >&2; exit 2; }

run() {
  if [ "$dry_run" = 1 ]; then
    printf '+ %s\n' "$*"
  else
    "$@"
  fi
}

# Pipes a secret value into a command without it appearing in arguments or output.
run_with_secret() {
  local var="$1"; shift
  if [ "$dry_run" = 1 ]; then
    printf '+ %s  < $%s\n' "$*" "$var"
  else
    printf '%s' "${!var}" | "$@"
  fi
}

sa_name="${service}-runtime"
sa_email="${sa_name}@${project}.iam.gserviceaccount.com"
image="${region}-docker.pkg.dev/${project}/${service}/${service}:latest"

run gcloud services enable run.googleapis.com secretmanager.googleapis.com \
  artifactregistry.googleapis.com cloudbuild.googleapis.com --project "$project"

if [ "$dry_run" = 1 ] || ! gcloud iam service-accounts describe "$sa_email" --project "$project" >/dev/null 2>&1; then
  run gcloud iam service-accounts create "$sa_name" --project "$project" \
    --display-name "ai-gateway runtime (reads its provider keys only)"
fi

secret_flags=()
for var in OPENAI_API_KEY ANTHROPIC_API_KEY GEMINI_API_KEY XAI_API_KEY MISTRAL_API_KEY GROQ_API_KEY \
  GATEWAY_API_KEYS; do
  [ -n "${!var:-}" ] || continue
  secret="${service}-$(echo "$var" | tr '[:upper:]_' '[:lower:]-')"
  if [ "$dry_run" = 1 ] || ! gcloud secrets describe "$secret" --project "$project" >/dev/null 2>&1; then
    run gcloud secrets create "$secret" --project "$project" --replication-policy automatic
  fi
  run_with_secret "$var" gcloud secrets versions add "$secret" --project "$project" --data-file=-
  run gcloud secrets add-iam-policy-binding "$secret" --project "$project" \
    --member "serviceAccount:${sa_email}" --role roles/secretmanager.secretAccessor
  secret_flags+=("${var}=${secret}:latest")
done

if [ "$dry_run" = 1 ] || ! gcloud artifacts repositories describe "$service" --location "$region" --project "$project" >/dev/null 2>&1; then
  run gcloud artifacts repositories create "$service" --repository-format docker \
    --location "$region" --project "$project"
fi
run gcloud builds submit --project "$project" --tag "$image" .

if [ -n "${GATEWAY_API_KEYS:-}" ]; then
  startup_probe="httpGet.path=/health,periodSeconds=1,failureThreshold=30"
else
  startup_probe="httpGet.path=/ready,periodSeconds=1,failureThreshold=30"
fi
deploy=(gcloud run deploy "$service" --project "$project" --region "$region" --image "$image"
  --service-account "$sa_email" --no-allow-unauthenticated
  --cpu "$cpu" --memory "$memory" --concurrency "$concurrency"
  --min-instances "$min_instances" --max-instances "$max_instances"
  --port 8080 --timeout 300
  # Cloud Run's front end checks the Host header itself; the gateway's DNS-rebinding guard on
  # /mcp would otherwise refuse the service's own run.app name.
  --set-env-vars 'AIGW_MCP__ALLOWED_HOSTS=["*"]'
  # The server only listens once its components are loaded, so /health answering means ready;
  # /ready would need the gateway's own key when GATEWAY_API_KEYS is set.
  --startup-probe "$startup_probe"
  --liveness-probe httpGet.path=/health)
if [ ${#secret_flags[@]} -gt 0 ]; then
  deploy+=(--set-secrets "$(IFS=,; echo "${secret_flags[*]}")")
fi
run "${deploy[@]}"

if [ "$dry_run" = 1 ]; then
  url="https://${service}-<hash>-${region}.a.run.app"
else
  url=$(gcloud run services describe "$service" --project "$project" --region "$region" --format 'value(status.url)')
fi
cat <<MSG

Deployed: $url (IAM only: callers need roles/run.invoker)
MSG
if [ -n "${GATEWAY_API_KEYS:-}" ]; then
  cat <<MSG
The gateway also requires one of its own keys: send the identity token in
X-Serverless-Authorization (Cloud Run's IAM header) and the gateway key in Authorization:
  curl -H "X-Serverless-Authorization: Bearer \$(gcloud auth print-identity-token)" \\
    -H "Authorization: Bearer \$GATEWAY_KEY" $url/v1/models
MSG
fi
cat <<MSG

Call it with an identity token:
  curl -H "Authorization: Bearer \$(gcloud auth print-identity-token)" $url/v1/models
or through a local authenticated proxy:
  gcloud run services proxy $service --project $project --region $region --port 8080

Register it as a remote MCP server (Streamable HTTP at /mcp), through the proxy above:
  claude mcp add --transport http ai-gateway http://localhost:8080/mcp
or directly, with an identity token (valid for an hour):
  claude mcp add --transport http ai-gateway $url/mcp \\
    --header "Authorization: Bearer \$(gcloud auth print-identity-token)"
MSG
