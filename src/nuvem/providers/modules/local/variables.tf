# The module contract (docs/pools.md): every pool module takes these four.

variable "pool" {
  description = "The pool's name."
  type        = string
}

variable "nodes" {
  description = "The machines the pool should have, keyed by node name (cpu-3)."
  type = map(object({
    index     = number
    cpus      = number
    memory_mb = number
    gpus      = number
    labels    = map(string)
  }))
}

variable "cluster" {
  description = "The Ray head's HOST:PORT and the cluster token (token_file: where it lies here)."
  type = object({
    address    = string
    token      = string
    token_file = string
  })
  sensitive = true
}

variable "bootstrap" {
  description = "nuvem's node playbook and cloud-init template, the pip requirement for nuvem, and the Python that runs nuvem here."
  type = object({
    playbook      = string
    cloud_init    = string
    nuvem_package = string
    python        = string
  })
}

# This module's own.

variable "state_root" {
  description = "Where each node keeps its state folder (one per node name); nuvem fills it in."
  type        = string
}

variable "address_range" {
  description = "Loopback addresses for the nodes: node N gets host N+1 of this range."
  type        = string
  default     = "127.0.100.0/24"

  validation {
    condition     = can(cidrhost(var.address_range, 1)) && startswith(var.address_range, "127.")
    error_message = "address_range must be a loopback range in CIDR form, e.g. 127.0.100.0/24."
  }
}

variable "worker_ports_from" {
  description = "The first port of the nodes' worker ranges: node N takes worker_ports_per_node ports from worker_ports_from + N * worker_ports_per_node."
  type        = number
  default     = 26000
}

variable "worker_ports_per_node" {
  description = "Ports each node's Ray workers may take (one per worker process)."
  type        = number
  default     = 100

  validation {
    condition     = var.worker_ports_per_node >= 10
    error_message = "worker_ports_per_node must be at least 10: each replica is a worker process."
  }
}

variable "object_store_memory" {
  description = "Shared memory for each node's Ray object store, e.g. 256Mi (Ray's minimum is 75Mi)."
  type        = string
  default     = "256Mi"
}

variable "ray_temp_root" {
  description = "Where each node's Ray session folder goes; keep it short, it holds Unix sockets (107 characters at most)."
  type        = string
  default     = "/tmp"
}

variable "ansible_playbook" {
  description = "The ansible-playbook command; empty: the one beside bootstrap.python."
  type        = string
  default     = ""
}
