# A user's own pool module for the tests: it honours the contract, makes no machine (a
# terraform_data per node), and fails on purpose for the nodes named in var.fail.

variable "pool" {
  type = string
}

variable "nodes" {
  type = map(object({
    index     = number
    cpus      = number
    memory_mb = number
    gpus      = number
    labels    = map(string)
  }))
}

variable "cluster" {
  type = object({
    address    = string
    token      = string
    token_file = string
  })
  sensitive = true
}

variable "bootstrap" {
  type = object({
    playbook      = string
    cloud_init    = string
    nuvem_package = string
    python        = string
  })
}

variable "fail" {
  description = "Nodes whose creation fails, as a provider's error would."
  type        = list(string)
  default     = []
}

variable "subnet" {
  type    = string
  default = "10.9.0.0/16"
}

resource "terraform_data" "node" {
  for_each = var.nodes

  input = {
    address = cidrhost(var.subnet, each.value.index)
    labels  = each.value.labels
  }

  provisioner "local-exec" {
    command = contains(var.fail, each.key) ? "echo 'quota exceeded for ${each.key}' >&2; exit 3" : "true"
  }
}

output "nodes" {
  value = {
    for name, node in terraform_data.node : name => {
      address = node.output.address
      id      = node.id
    }
  }
}
