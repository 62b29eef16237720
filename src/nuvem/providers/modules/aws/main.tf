# Each node is an EC2 instance keyed by node name, configured on first boot by cloud-init
# with nuvem's user data: install nuvem, run the node playbook, join.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "5.100.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, { "nuvem.dev/pool" = var.pool })
  }
}

resource "aws_instance" "node" {
  for_each = var.nodes

  ami                    = var.ami
  instance_type          = var.instance_type
  subnet_id              = var.subnet_id
  vpc_security_group_ids = var.security_group_ids
  key_name               = var.key_name

  # The user data holds the cluster token: it is readable from the instance's metadata
  # service, so require IMDSv2 tokens and keep the hop limit at 1 (no containers).
  user_data = templatefile(var.bootstrap.cloud_init, {
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
  user_data_replace_on_change = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_size = var.root_volume_gb
    volume_type = "gp3"
    encrypted   = true
  }

  tags = {
    Name             = each.key
    "nuvem.dev/node" = each.key
  }
}
