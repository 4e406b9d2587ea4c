# No providers: the user data goes into whichever cloud's VM resource the caller uses
# (user_data, metadata.user-data, custom_data, ...).
terraform {
  required_version = ">= 1.9.0"
}
