#!/usr/bin/env bash
# Downloads TiKV's and PD's official Grafana dashboards at a pinned release tag, ready to import
# into a Grafana whose Prometheus scrapes the cluster through this chart's PodMonitors (they
# filter on job, tidb_cluster, k8s_cluster and instance, which the PodMonitors set).
#
#   fetch-official-dashboards.sh [--tag vX.Y.Z] [--datasource NAME] [--out DIR] [--print-urls]
#
# The dashboards name their data source through an import input (${DS_TEST-CLUSTER}); it is
# replaced by NAME (default: Prometheus) so that Grafana's sidecar or a plain import can load
# them. tikv_details.json is about 3 MB, more than a ConfigMap holds: import it through Grafana's
# UI or API, or mount the directory into Grafana's dashboard provider. Needs internet access
# (raw.githubusercontent.com), so nothing in the repository's tests runs it beyond --print-urls.
set -euo pipefail

tag=v8.5.0
datasource=Prometheus
out=official
print_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag="$2"; shift 2 ;;
    --datasource) datasource="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --print-urls) print_only=1; shift ;;
    *) echo "usage: $0 [--tag vX.Y.Z] [--datasource NAME] [--out DIR] [--print-urls]" >&2; exit 2 ;;
  esac
done

urls=(
  "https://raw.githubusercontent.com/tikv/tikv/$tag/metrics/grafana/tikv_summary.json"
  "https://raw.githubusercontent.com/tikv/tikv/$tag/metrics/grafana/tikv_details.json"
  "https://raw.githubusercontent.com/tikv/tikv/$tag/metrics/grafana/tikv_trouble_shooting.json"
  "https://raw.githubusercontent.com/tikv/pd/$tag/metrics/grafana/pd.json"
)

if [ "$print_only" = 1 ]; then
  printf '%s\n' "${urls[@]}"
  exit 0
fi

mkdir -p "$out"
for url in "${urls[@]}"; do
  file="$out/$(basename "$url")"
  echo "downloading $url"
  curl -fsSL --retry 3 "$url" -o "$file.tmp"
  # The import input becomes the data source's name.
  sed 's/\${DS_TEST-CLUSTER}/'"$datasource"'/g' "$file.tmp" >"$file"
  rm -f "$file.tmp"
done
echo "dashboards for $tag in $out/ (data source: $datasource)"
