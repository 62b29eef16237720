output "nodes" {
  description = "One entry per key of var.nodes: the address the node joins from, and its id."
  value = {
    for name, node in terraform_data.node : name => {
      address = node.output.address
      id      = node.id
    }
  }
}
