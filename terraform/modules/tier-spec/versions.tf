# No providers on purpose: everything this module computes can be planned, validated and
# tested offline, and the provider modules only apply what it renders.
terraform {
  # 1.9 is the first release whose validation rules may refer to other variables.
  required_version = ">= 1.9.0"
}
