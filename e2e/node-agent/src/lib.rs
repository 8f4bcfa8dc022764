//! Local stand-in for kubelet: runs pods as processes on this machine (tests and just up)
