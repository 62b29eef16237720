output "nodes" {
  description = "One entry per key of var.nodes: the VM's first non-loopback IPv4 address (\"\" until the guest agent reports it) and its VM id."
  value = {
    for name, vm in proxmox_virtual_environment_vm.node : name => {
      address = try([for ip in flatten(vm.ipv4_addresses) : ip if !startswith(ip, "127.")][0], "")
      id      = tostring(vm.vm_id)
    }
  }
}
