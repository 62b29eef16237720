output "nodes" {
  description = "One entry per key of var.nodes: the instance's private IPv4 address and its instance id."
  value = {
    for name, instance in aws_instance.node : name => {
      address = instance.private_ip
      id      = instance.id
    }
  }
}
