"""Export a fleet for other runtimes, from the same rendered specs `apply` uses.

``kube``     Kubernetes manifests (and a variant `podman kube play` runs);
``quadlet``  Podman Quadlet units for systemd-managed hosts.

Pure: a fleet goes in, manifests or unit texts come out; the CLI reads and writes files.
"""
