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

variable "endpoint" {
  description = "The Proxmox VE API, e.g. https://pve.example.com:8006/."
  type        = string
}

variable "api_token" {
  description = "An API token, USER@REALM!TOKENID=SECRET, allowed to clone VMs and upload snippets."
  type        = string
  sensitive   = true
}

variable "insecure" {
  description = "Accept the API's self-signed TLS certificate."
  type        = bool
  default     = false
}

variable "ssh_username" {
  description = "The user bpg/proxmox logs in as over SSH (with the SSH agent) to upload the cloud-init snippets."
  type        = string
  default     = "root"
}

variable "proxmox_node" {
  description = "The Proxmox node the VMs run on."
  type        = string
}

variable "template_vm_id" {
  description = "The VM id of the template to clone: a cloud-init enabled image with qemu-guest-agent (e.g. a Debian 12 genericcloud image)."
  type        = number
}

variable "vm_id_base" {
  description = "Node N gets VM id vm_id_base + N."
  type        = number
  default     = 9000
}

variable "datastore" {
  description = "Where the VMs' disks and cloud-init drives go."
  type        = string
  default     = "local-lvm"
}

variable "snippets_datastore" {
  description = "A datastore with the snippets content type, for the cloud-init user data."
  type        = string
  default     = "local"
}

variable "bridge" {
  description = "The network bridge the VMs attach to; they take an address by DHCP."
  type        = string
  default     = "vmbr0"
}

variable "object_store_memory" {
  description = "Shared memory for each node's Ray object store, e.g. 256Mi."
  type        = string
  default     = "256Mi"
}
