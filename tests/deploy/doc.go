// Package deploy tests the delivery of HighGoPress: the Dockerfile, the Helm
// chart charts/highgopress rendered and checked offline (strict decoding with
// the Kubernetes API types, Pod Security "restricted"), and the chart
// installed, upgraded, rolled back and uninstalled on a real kube-apiserver
// started by scripts/kube.sh.
package deploy
