# Each node is a linked clone of a template VM on Proxmox VE, configured on first boot by
# cloud-init with nuvem's user data: install nuvem, run the node playbook, join.

terraform {
  required_version = ">= 1.5"
  required_providers {
    proxmox = {
      source  = "bpg/proxmox"
      version = "0.78.0"
    }
  }
}

provider "proxmox" {
  endpoint  = var.endpoint
  api_token = var.api_token
  insecure  = var.insecure

  # Snippets (the cloud-init user data) are uploaded over SSH, not the API.
  ssh {
    agent    = true
    username = var.ssh_username
  }
}

resource "proxmox_virtual_environment_file" "user_data" {
  for_each = var.nodes

  content_type = "snippets"
  datastore_id = var.snippets_datastore
  node_name    = var.proxmox_node

  source_raw {
    file_name = "nuvem-${var.pool}-${each.key}.yaml"
    data = templatefile(var.bootstrap.cloud_init, {
      node                = each.key
      pool                = var.pool
      head                = var.cluster.address
      token               = var.cluster.token
      playbook            = file(var.bootstrap.playbook)
      nuvem_package       = var.bootstrap.nuvem_package
      cpus                = each.value.cpus
      memory_mb           = each.value.memory_mb
      gpus                = each.value.gpus
      labels              = each.value.labels
      object_store_memory = var.object_store_memory
    })
  }
}

resource "proxmox_virtual_environment_vm" "node" {
  for_each = var.nodes

  name        = each.key
  description = "nuvem node ${each.key} of pool ${var.pool}"
  node_name   = var.proxmox_node
  vm_id       = var.vm_id_base + each.value.index
  tags        = ["nuvem", "nuvem-pool-${var.pool}"]

  clone {
    vm_id = var.template_vm_id
    full  = false # a linked clone: seconds, and it shares the template's disk
  }

  # The guest agent reports the address the VM got by DHCP (the `nodes` output).
  agent {
    enabled = true
  }

  cpu {
    cores = each.value.cpus
    type  = "host"
  }

  memory {
    dedicated = each.value.memory_mb
  }

  network_device {
    bridge = var.bridge
  }

  initialization {
    datastore_id      = var.datastore
    user_data_file_id = proxmox_virtual_environment_file.user_data[each.key].id

    ip_config {
      ipv4 {
        address = "dhcp"
      }
    }
  }

  # The node drains and leaves when its unit stops; a shutdown lets it.
  stop_on_destroy     = false
  timeout_shutdown_vm = 120
}
