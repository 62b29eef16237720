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

variable "region" {
  description = "The AWS region, e.g. eu-central-1 (credentials come from the usual AWS environment or profile)."
  type        = string
}

variable "ami" {
  description = "The image the instances boot: any cloud-init image with python3-venv, e.g. Debian 12 or Ubuntu 24.04."
  type        = string
}

variable "instance_type" {
  description = "The instance type; pick one that holds the pool's node shape (cpus, memory, gpus)."
  type        = string
  default     = "t3.medium"
}

variable "subnet_id" {
  description = "The subnet the instances start in; it must reach the Ray head."
  type        = string
}

variable "security_group_ids" {
  description = "Security groups that let the instances reach the head and the head and gateway reach them (Ray's ports and the replicas' ports)."
  type        = list(string)
}

variable "key_name" {
  description = "An EC2 key pair for SSH; null: none."
  type        = string
  default     = null
}

variable "root_volume_gb" {
  description = "The root disk's size (nuvem, Ray and the functions' environments)."
  type        = number
  default     = 30
}

variable "object_store_memory" {
  description = "Shared memory for each node's Ray object store, e.g. 256Mi."
  type        = string
  default     = "256Mi"
}

variable "tags" {
  description = "Tags for every instance, beside nuvem's."
  type        = map(string)
  default     = {}
}
