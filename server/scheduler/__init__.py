"""The kube-scheduler equivalent: filters, scoring, preemption and binding of pending pods."""
