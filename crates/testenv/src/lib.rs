//! Test support: a real etcd + kube-apiserver (+ controller-manager, scheduler) and pd-server on loopback
