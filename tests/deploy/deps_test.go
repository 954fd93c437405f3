package deploy

import (
	_ "github.com/moby/buildkit/frontend/dockerfile/parser"
	_ "helm.sh/helm/v4/pkg/action"
	_ "k8s.io/api/core/v1"
	_ "k8s.io/apimachinery/pkg/runtime/serializer/json"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/pod-security-admission/policy"
)
