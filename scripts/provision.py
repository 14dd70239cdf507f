#!/usr/bin/env python3
"""Creates, on a local AWS endpoint (moto's server), the tables, queues and buckets that
template.yaml declares, and resolves each function's environment from the same template.

The template is the single source of truth: a table's keys and indexes, a queue's redrive policy
and every function's environment variables are read from it, so the local stack cannot drift
from what `sam deploy` creates. Resources are named `{prefix}{LogicalId}`.

Output (stdout, JSON): {"resources": {LogicalId: {"name":..., "arn":..., "url":...}},
                        "functions": {binary-name: {VAR: value}}}
"""
import argparse
import json
import re
import sys

import boto3
import yaml


class CfnLoader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation short-form tags as {"Fn::X": value} dicts."""


def _cfn_tag(loader, tag_suffix, node):
    name = {"Ref": "Ref", "Condition": "Condition"}.get(tag_suffix, "Fn::" + tag_suffix)
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if name == "Fn::GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(path):
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=CfnLoader)


class Provisioner:
    def __init__(self, template, endpoint, region, prefix, params):
        self.t = template
        self.prefix = prefix
        self.params = params
        kw = dict(endpoint_url=endpoint, region_name=region,
                  aws_access_key_id="test", aws_secret_access_key="test")
        self.ddb = boto3.client("dynamodb", **kw)
        self.sqs = boto3.client("sqs", **kw)
        self.s3 = boto3.client("s3", **kw)
        self.ses = boto3.client("sesv2", **kw)
        self.region = region
        self.out = {}
        self.secret_values = {}  # a secret's local ARN -> its local value

    def resources(self, kind):
        for logical, res in self.t.get("Resources", {}).items():
            if res.get("Type") == kind:
                yield logical, res.get("Properties", {}) or {}

    # ---- intrinsic functions, resolved against local resources and given parameters ----
    def resolve(self, value):
        if isinstance(value, dict) and len(value) == 1:
            (fn, arg), = value.items()
            if fn == "Ref":
                if arg in self.out:
                    return self.out[arg]["name"]
                spec = self.t.get("Parameters", {}).get(arg)
                if spec is not None:
                    value = self.params.get(arg, spec.get("Default"))
                    if value is None:
                        raise KeyError(f"parameter {arg} has no value")
                    if spec.get("Type", "").startswith(("CommaDelimitedList", "List<")):
                        return [v.strip() for v in str(value).split(",")]
                    return value
                if arg == "AWS::Region":
                    return self.region
                raise KeyError(f"unresolvable Ref {arg}")
            if fn == "Fn::GetAtt":
                logical, attr = arg
                return self.attr(logical, attr)
            if fn == "Fn::If":
                # Conditions are AWS-side choices (a secret that exists only when its parameter
                # is set): locally the variable is left out, like a parameter without a value.
                raise KeyError(f"Fn::If {arg[0]}: a condition has no value locally")
            if fn == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

                def sub(m):
                    key = m.group(1)
                    if key in variables:
                        return str(self.resolve(variables[key]))
                    if "." in key:
                        logical, attr = key.split(".", 1)
                        return str(self.attr(logical, attr))
                    return str(self.resolve({"Ref": key}))
                text = re.sub(r"\$\{([^}!]+)\}", sub, text)
                # A dynamic reference to a secret is its local value (a cache user's password).
                return re.sub(r"\{\{resolve:secretsmanager:([^}]+)\}\}",
                              lambda m: self.secret_values[m.group(1)], text)
            if fn == "Fn::If":
                name, yes, no = arg
                return self.resolve(yes if self.condition(name) else no)
            if fn == "Fn::Join":
                sep, items = arg
                items = self.resolve(items)
                return sep.join(str(self.resolve(i)) for i in items)
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value

    def condition(self, name):
        """A condition of the template, evaluated against the given parameters (the edge's
        EnableEdge, for example: off unless a caller turns it on)."""
        return self.truth(self.t.get("Conditions", {})[name])

    def truth(self, expr):
        (fn, arg), = expr.items()
        if fn == "Condition":
            return self.condition(arg)
        if fn == "Fn::Equals":
            return str(self.resolve(arg[0])) == str(self.resolve(arg[1]))
        if fn == "Fn::Not":
            return not self.truth(arg[0])
        if fn == "Fn::And":
            return all(self.truth(a) for a in arg)
        if fn == "Fn::Or":
            return any(self.truth(a) for a in arg)
        raise KeyError(f"unsupported condition function {fn}")

    def attr(self, logical, attr):
        if self.t.get("Resources", {}).get(logical, {}).get("Type", "").startswith("Custom::"):
            # Made by a custom resource in AWS (the signing key): the caller sets it locally.
            raise KeyError(f"{logical}.{attr}: a custom resource's attribute has no value locally")
        info = self.out.get(logical)
        if info is None:
            raise KeyError(f"unresolvable GetAtt {logical}.{attr}")
        return {"Arn": info.get("arn"), "QueueUrl": info.get("url"), "QueueName": info.get("name"),
                "StreamArn": info.get("arn")}.get(attr) or info.get(attr)

    # ---- resource creation ----
    def tables(self):
        for logical, p in self.resources("AWS::DynamoDB::Table"):
            name = self.prefix + logical
            args = dict(TableName=name, AttributeDefinitions=p["AttributeDefinitions"],
                        KeySchema=p["KeySchema"], BillingMode="PAY_PER_REQUEST")
            if p.get("GlobalSecondaryIndexes"):
                args["GlobalSecondaryIndexes"] = [
                    {k: v for k, v in g.items() if k in ("IndexName", "KeySchema", "Projection")}
                    for g in p["GlobalSecondaryIndexes"]]
            try:
                desc = self.ddb.create_table(**args)["TableDescription"]
            except self.ddb.exceptions.ResourceInUseException:
                desc = self.ddb.describe_table(TableName=name)["Table"]
            ttl = p.get("TimeToLiveSpecification")
            if ttl and ttl.get("Enabled"):
                self.ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={
                    "Enabled": True, "AttributeName": ttl["AttributeName"]})
            self.out[logical] = {"name": name, "arn": desc["TableArn"]}

    def queues(self):
        pending = list(self.resources("AWS::SQS::Queue"))
        # Dead-letter queues first: a queue's RedrivePolicy names its DLQ's ARN.
        pending.sort(key=lambda lp: "RedrivePolicy" in lp[1])
        for logical, p in pending:
            name = self.prefix + logical + (".fifo" if p.get("FifoQueue") else "")
            attrs = {}
            for key in ("VisibilityTimeout", "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds",
                        "DelaySeconds", "FifoQueue", "ContentBasedDeduplication"):
                if key in p:
                    attrs[key] = str(self.resolve(p[key])).lower() if isinstance(p[key], bool) else str(self.resolve(p[key]))
            if "RedrivePolicy" in p:
                rp = p["RedrivePolicy"]
                attrs["RedrivePolicy"] = json.dumps({
                    "deadLetterTargetArn": self.resolve(rp["deadLetterTargetArn"]),
                    "maxReceiveCount": str(self.resolve(rp["maxReceiveCount"]))})
            url = self.sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
            arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            self.out[logical] = {"name": name, "arn": arn, "url": url}

    def buckets(self):
        for logical, p in self.resources("AWS::S3::Bucket"):
            name = (self.prefix + logical).lower().replace("_", "-")
            try:
                self.s3.create_bucket(Bucket=name)
            except (self.s3.exceptions.BucketAlreadyOwnedByYou, self.s3.exceptions.BucketAlreadyExists):
                pass
            cors = p.get("CorsConfiguration")
            if cors:
                rules = []
                for r in cors.get("CorsRules", []):
                    rule = {"AllowedMethods": r["AllowedMethods"],
                            "AllowedOrigins": self.resolve(r["AllowedOrigins"])}
                    if "AllowedHeaders" in r:
                        rule["AllowedHeaders"] = r["AllowedHeaders"]
                    if "ExposedHeaders" in r:  # CloudFormation's name for S3's ExposeHeaders
                        rule["ExposeHeaders"] = r["ExposedHeaders"]
                    if "MaxAge" in r:
                        rule["MaxAgeSeconds"] = int(r["MaxAge"])
                    rules.append(rule)
                self.s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": rules})
            lifecycle = p.get("LifecycleConfiguration")
            if lifecycle:
                # CloudFormation's rule shape to S3's: an id, a status, a prefix filter, the actions.
                rules = []
                for r in lifecycle.get("Rules", []):
                    rule = {"ID": r["Id"], "Status": r["Status"], "Filter": {"Prefix": r.get("Prefix", "")}}
                    if "ExpirationInDays" in r:
                        rule["Expiration"] = {"Days": int(r["ExpirationInDays"])}
                    if "AbortIncompleteMultipartUpload" in r:
                        rule["AbortIncompleteMultipartUpload"] = {
                            "DaysAfterInitiation": int(r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])}
                    rules.append(rule)
                self.s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
            self.out[logical] = {"name": name, "arn": f"arn:aws:s3:::{name}"}

    def ses_identity(self):
        """The SesIdentity parameter is an identity the account has verified before deploying (the
        template only names it); moto's SES, like SES, refuses to send from anything else."""
        identity = self.params.get("SesIdentity")
        if not identity:
            return
        try:
            self.ses.create_email_identity(EmailIdentity=identity)
        except self.ses.exceptions.AlreadyExistsException:
            pass

    def secrets(self):
        """Secrets Manager secrets. AWS generates or stores them and a function reads each at init
        through <NAME>_SECRET_ARN (shared::config::secrets); locally the value is the --param of
        the secret's logical id (or its SecretString), given to the function as <NAME> itself, and
        to the cache users' ACL. A secret with no local value is left out."""
        for logical, p in self.resources("AWS::SecretsManager::Secret"):
            value = self.params.get(logical)
            if value is None and "SecretString" in p:
                try:
                    value = self.resolve(p["SecretString"])
                except KeyError:
                    value = None
            if not value:
                continue
            arn = f"arn:aws:secretsmanager:{self.region}:000000000000:secret:{self.prefix}{logical}"
            self.out[logical] = {"name": arn, "arn": arn}
            self.secret_values[arn] = str(value)

    def function_envs(self, overrides):
        glob = (self.t.get("Globals", {}).get("Function", {}).get("Environment", {}) or {}).get("Variables", {})
        envs = {}
        for logical, p in self.resources("AWS::Serverless::Function"):
            binary = self.t["Resources"][logical].get("Metadata", {}).get("BuildProperties", {}).get("Binary", logical)
            variables = dict(glob)
            variables.update((p.get("Environment", {}) or {}).get("Variables", {}) or {})
            env = {}
            for key, value in variables.items():
                try:
                    resolved = str(self.resolve(value))
                    if key.endswith("_SECRET_ARN") and resolved in self.secret_values:
                        env[key[: -len("_SECRET_ARN")]] = self.secret_values[resolved]
                        continue
                    env[key] = resolved
                except KeyError as e:
                    # A parameter with no local value (a secret the caller did not need) just
                    # leaves the variable out; anything else unresolvable is worth a word.
                    if key not in overrides and "has no value" not in str(e):
                        print(f"provision: {binary}: {key}: {e}", file=sys.stderr)
            # Local stand-ins for what is not emulated (the cache endpoint, for example).
            local_names = {k.removesuffix("_SECRET_ARN") for k in variables} | set(variables)
            env.update({k: v for k, v in overrides.items() if k in local_names})
            envs[binary] = env
        return envs


    def acl_file(self):
        """redis-server ACL lines for the template's cache users (passwords from the parameters),
        after an open local `default` user (the stack's and the tests' own view; off in AWS)."""
        lines = ["user default on nopass ~* &* +@all"]
        for logical, p in self.resources("AWS::ElastiCache::User"):
            access = str(p.get("AccessString", ""))
            if "on" not in access.split():
                continue
            passwords = (p.get("AuthenticationMode") or {}).get("Passwords") or []
            if not passwords:
                raise KeyError(f"{logical}: an enabled user needs a password")
            password = self.resolve(passwords[0])
            lines.append(f"user {p['UserName']} >{password} {access}")
        return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--template", default="template.yaml")
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--prefix", default="")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="a template parameter's value")
    ap.add_argument("--set", action="append", default=[], metavar="VAR=VALUE",
                    help="a function variable's local value, wherever the template declares VAR")
    ap.add_argument("--acl-out", metavar="FILE",
                    help="also write the template's cache users as a redis-server ACL file")
    args = ap.parse_args()
    params = dict(p.split("=", 1) for p in args.param)
    prov = Provisioner(load_template(args.template), args.endpoint, args.region, args.prefix, params)
    prov.tables()
    prov.queues()
    prov.buckets()
    prov.ses_identity()
    prov.secrets()
    if args.acl_out:
        with open(args.acl_out, "w", encoding="utf-8") as f:
            f.write(prov.acl_file())
    overrides = dict(s.split("=", 1) for s in args.set)
    json.dump({"resources": prov.out, "functions": prov.function_envs(overrides)}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
