# Each node is a real `nuvem node join` on this machine, at its own loopback address,
# configured by the same Ansible playbook a VM runs. Built-in resources only, so it works
# with no provider to download.

terraform {
  required_version = ">= 1.5"
}

locals {
  # Neither is a secret; unmarking them keeps the provisioners' output visible.
  head       = nonsensitive(var.cluster.address)
  token_file = nonsensitive(var.cluster.token_file)
  ansible_playbook = (
    var.ansible_playbook != "" ? var.ansible_playbook : "${dirname(var.bootstrap.python)}/ansible-playbook"
  )
  machines = {
    for name, node in var.nodes : name => {
      address   = cidrhost(var.address_range, node.index + 1)
      state_dir = "${var.state_root}/${name}"
      # Short and per node: Ray numbers its sockets in the session folder, and two nodes
      # starting at once in one folder could take the same names.
      temp_dir     = "${var.ray_temp_root}/nuvem-${substr(sha1("${var.state_root}/${name}"), 0, 12)}"
      first_worker = var.worker_ports_from + node.index * var.worker_ports_per_node
    }
  }
}

resource "terraform_data" "node" {
  for_each = var.nodes

  # A running node cannot change its offer or its head: any change makes a new node.
  triggers_replace = {
    node = each.value
    head = local.head
  }

  # What the destroy-time provisioner needs (it may only read self).
  input = {
    address   = local.machines[each.key].address
    state_dir = local.machines[each.key].state_dir
    temp_dir  = local.machines[each.key].temp_dir
    python    = var.bootstrap.python
  }

  lifecycle {
    precondition {
      condition     = local.machines[each.key].first_worker + var.worker_ports_per_node - 1 <= 65535
      error_message = "Node ${each.key} (index ${each.value.index}) would take worker ports above 65535; lower worker_ports_from or worker_ports_per_node."
    }
  }

  provisioner "local-exec" {
    command = "\"$ANSIBLE_PLAYBOOK\" -i localhost, -c local -e \"$NUVEM_NODE_VARS\" \"$NUVEM_PLAYBOOK\""
    environment = {
      ANSIBLE_PLAYBOOK            = local.ansible_playbook
      NUVEM_PLAYBOOK              = var.bootstrap.playbook
      ANSIBLE_PYTHON_INTERPRETER  = var.bootstrap.python
      ANSIBLE_LOCALHOST_WARNING   = "false"
      ANSIBLE_NOCOLOR             = "1"
      ANSIBLE_RETRY_FILES_ENABLED = "false"
      LC_ALL                      = "C.UTF-8"
      NUVEM_NODE_VARS = jsonencode({
        nuvem_node                = each.key
        nuvem_head                = local.head
        nuvem_token_source        = local.token_file
        nuvem_state_dir           = local.machines[each.key].state_dir
        nuvem_python              = var.bootstrap.python
        nuvem_node_ip             = local.machines[each.key].address
        nuvem_cpus                = each.value.cpus
        nuvem_memory_mb           = each.value.memory_mb
        nuvem_gpus                = each.value.gpus
        nuvem_labels              = each.value.labels
        nuvem_object_store_memory = var.object_store_memory
        nuvem_worker_ports        = "${local.machines[each.key].first_worker}-${local.machines[each.key].first_worker + var.worker_ports_per_node - 1}"
        nuvem_temp_dir            = local.machines[each.key].temp_dir
        nuvem_run_as              = "detach"
      })
    }
  }

  # Leave the cluster (drained first); a node that is gone already is fine. Ray's last
  # processes may still be ending when `node leave` returns, and would write into the
  # session folder again: wait for them (they name it on their command line), then remove it.
  provisioner "local-exec" {
    when    = destroy
    command = <<-EOT
      "$PYTHON" -m nuvem.cli.main node leave --state-dir "$STATE_DIR" || test ! -e "$STATE_DIR/cluster/node.json" || exit 1
      for _ in $(seq 50); do pgrep -f -- "$TEMP_DIR" >/dev/null || break; sleep 0.2; done
      rm -rf "$TEMP_DIR"
    EOT
    environment = {
      PYTHON    = self.input.python
      STATE_DIR = self.input.state_dir
      TEMP_DIR  = self.input.temp_dir
    }
  }
}
