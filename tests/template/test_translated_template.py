"""template.yaml as CloudFormation sees it: translated by the SAM translator (the samtranslator that
ships with SAM CLI, the same transform CloudFormation runs) with real parameter values, then checked
as a contract: what each function may do, who may invoke what, which routes exist, what each
environment variable points at, and the settings of the queue mapping, tables and bucket.

Each check is a function returning the list of what is wrong; the tests assert it is empty, and the
mutation tests at the end remove a permission, a route or a reference from template.yaml and
assert the check catches it. Run with `.venv/bin/python -m pytest tests/template` (make test does).
"""
import copy
import os
import re
import sys
import tomllib

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from provision import load_template  # noqa: E402  (CloudFormation-aware YAML loader)

from samtranslator.translator.transform import transform  # noqa: E402

REGION = "eu-west-1"
# What a deploy passes (the workflow's parameter overrides), with list parameters as lists, the way
# CloudFormation hands them to the transform.
PARAMETERS = {
    "Stage": "prod",
    "VpcId": "vpc-0123456789abcdef0",
    "SubnetIds": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
    "AllowedOrigins": ["https://app.example.com", "https://admin.example.com"],
    "JwtSigningKey": "k" * 86,
    "JwtSigningKeyId": "k1",
    "JwtPublicKeys": "k1:" + "p" * 43,
    "RefreshTokenSecret": "r" * 48,
    "PostsReadCachePassword": "posts-read-password-0001",
    "PostsWriteCachePassword": "posts-write-password-0001",
    "AuthRefreshCachePassword": "auth-refresh-password-0001",
    "PostsCursorSecret": "c" * 48,
    "StripeWebhookSecret": "whsec_0123456789abcdef",
    "EmailFromAddress": "no-reply@example.com",
    "SesIdentity": "example.com",
    "AppUrl": "https://app.example.com",
}
PSEUDO = {"AWS::Region", "AWS::AccountId", "AWS::Partition", "AWS::StackName", "AWS::URLSuffix", "AWS::NoValue",
          "AWS::StackId", "AWS::NotificationARNs"}

BASIC = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
VPC = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
# Added by SAM itself for an SQS event source (ReceiveMessage, DeleteMessage, GetQueueAttributes).
SQS_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole"
SQS_POLLER = ["sqs:ChangeMessageVisibility", "sqs:ChangeMessageVisibilityBatch", "sqs:DeleteMessage",
              "sqs:DeleteMessageBatch", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"]
EMAIL_QUEUE_BY_NAME = "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${queueName}[queueName=EmailQueue.QueueName]"
SES_IDENTITY = "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/${SesIdentity}"

# Every function's permissions, exactly: managed policies, and (action, resource) pairs.
INTENDED_IAM = {
    "PostsReadFunction": ({BASIC, VPC}, {
        ("dynamodb:GetItem", "PostsTable.Arn"), ("dynamodb:Query", "PostsTable.Arn"),
        ("dynamodb:GetItem", "${PostsTable.Arn}/index/byFeed"), ("dynamodb:Query", "${PostsTable.Arn}/index/byFeed"),
    }),
    "PostsWriteFunction": ({BASIC, VPC}, {
        ("dynamodb:GetItem", "PostsTable.Arn"), ("dynamodb:PutItem", "PostsTable.Arn"),
        ("dynamodb:UpdateItem", "PostsTable.Arn"), ("dynamodb:DeleteItem", "PostsTable.Arn"),
        ("dynamodb:Query", "${PostsTable.Arn}/index/byFeed"),
    }),
    # Redis only: nothing beyond logs and the VPC interfaces.
    "AuthRefreshFunction": ({BASIC, VPC}, set()),
    "UploadPresignFunction": ({BASIC}, {
        ("s3:PutObject", "${UploadsBucket.Arn}/uploads/*"), ("s3:GetObject", "${UploadsBucket.Arn}/uploads/*"),
        ("s3:DeleteObject", "${UploadsBucket.Arn}/uploads/*"),
        ("s3:PutObject", "${UploadsBucket.Arn}/avatars/*"), ("s3:GetObject", "${UploadsBucket.Arn}/avatars/*"),
        ("s3:DeleteObject", "${UploadsBucket.Arn}/avatars/*"),
        ("dynamodb:GetItem", "UsersTable.Arn"), ("dynamodb:UpdateItem", "UsersTable.Arn"),
    }),
    "StripeWebhookFunction": ({BASIC}, {
        ("dynamodb:PutItem", "IdempotencyTable.Arn"), ("dynamodb:UpdateItem", "IdempotencyTable.Arn"),
        ("dynamodb:DeleteItem", "IdempotencyTable.Arn"),
        ("dynamodb:UpdateItem", "OrdersTable.Arn"), ("dynamodb:UpdateItem", "SubscriptionsTable.Arn"),
        ("sqs:SendMessage", "EmailQueue.Arn"),
    }),
    "EmailSenderFunction": ({BASIC, SQS_EXECUTION}, {
        *((action, EMAIL_QUEUE_BY_NAME) for action in SQS_POLLER),
        ("dynamodb:GetItem", "IdempotencyTable.Arn"), ("dynamodb:PutItem", "IdempotencyTable.Arn"),
        ("dynamodb:UpdateItem", "IdempotencyTable.Arn"), ("dynamodb:DeleteItem", "IdempotencyTable.Arn"),
        ("ses:SendEmail", SES_IDENTITY),
    }),
}

# The binary each function runs (Metadata.BuildProperties.Binary) for the route table.
BINARIES = {
    "posts-read": "PostsReadFunction", "posts-write": "PostsWriteFunction", "auth-refresh": "AuthRefreshFunction",
    "upload-presign": "UploadPresignFunction", "stripe-webhook": "StripeWebhookFunction",
    "email-sender": "EmailSenderFunction",
}


# ----------------------------------------------------------------------------- translation
def sam_template():
    return load_template(os.path.join(ROOT, "template.yaml"))


def translate(template):
    """CloudFormation of a SAM template, as `sam package` + the transform make it: each function's
    CodeUri is its uploaded artifact (s3://), then the SAM transform."""
    t = copy.deepcopy(template)
    t.get("Globals", {}).get("Function", {}).pop("CodeUri", None)
    for logical, res in t["Resources"].items():
        if res["Type"] == "AWS::Serverless::Function":
            res["Properties"]["CodeUri"] = f"s3://bundle-artifacts/{logical}.zip"
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)

    class NoManagedPolicies:
        """The template names no managed policy by name (only inline statements and SAM policy
        templates), so the translator needs no IAM lookup."""
        def load(self):
            return {}

    return transform(t, dict(PARAMETERS), NoManagedPolicies())


@pytest.fixture(scope="module")
def cfn():
    return translate(sam_template())


def resources_of(cfn, kind):
    return {k: v for k, v in cfn["Resources"].items() if v["Type"] == kind}


def show(value):
    """A readable string for a resource expression: GetAtt -> "X.Attr", Sub -> its text."""
    if isinstance(value, dict) and len(value) == 1:
        (fn, arg), = value.items()
        if fn == "Fn::GetAtt":
            return ".".join(arg) if isinstance(arg, list) else arg
        if fn == "Ref":
            return f"!Ref {arg}"
        if fn == "Fn::Sub":
            if isinstance(arg, list):
                text, variables = arg
                return text + "[" + ",".join(f"{k}={show(v)}" for k, v in sorted(variables.items())) + "]"
            return arg
    return value if isinstance(value, str) else repr(value)


def as_list(value):
    return value if isinstance(value, list) else [value]


# ----------------------------------------------------------------------------- checks
def iam_problems(cfn):
    problems = []
    for function, (managed, pairs) in INTENDED_IAM.items():
        role = cfn["Resources"].get(f"{function}Role")
        if role is None:
            problems.append(f"{function}: no role")
            continue
        props = role["Properties"]
        got_managed = set(props.get("ManagedPolicyArns", []))
        if got_managed != managed:
            problems.append(f"{function}: managed policies {sorted(got_managed)}, intended {sorted(managed)}")
        got = set()
        for policy in props.get("Policies", []):
            for statement in as_list(policy["PolicyDocument"]["Statement"]):
                if statement.get("Effect") != "Allow":
                    problems.append(f"{function}: a {statement.get('Effect')} statement")
                for action in as_list(statement["Action"]):
                    for resource in as_list(statement["Resource"]):
                        got.add((action, show(resource)))
        for action, resource in sorted(got - pairs):
            problems.append(f"{function}: may {action} on {resource}, which is not intended")
        for action, resource in sorted(pairs - got):
            problems.append(f"{function}: lacks {action} on {resource}")
    return problems


def function_url_problems(cfn):
    """A public Function URL needs both permissions (required for URLs created since October 2025):
    lambda:InvokeFunctionUrl with FunctionUrlAuthType NONE, and lambda:InvokeFunction limited to
    calls through the URL (InvokedViaFunctionUrl)."""
    problems = []
    urls = resources_of(cfn, "AWS::Lambda::Url")
    if set(urls) != {"StripeWebhookFunctionUrl"}:
        problems.append(f"Function URLs {sorted(urls)}, intended only the webhook's")
    permissions = [p["Properties"] for p in resources_of(cfn, "AWS::Lambda::Permission").values()
                   if p["Properties"].get("FunctionName") == {"Ref": "StripeWebhookFunction"}]
    url_invoke = [p for p in permissions if p["Action"] == "lambda:InvokeFunctionUrl"]
    if not any(p.get("Principal") == "*" and p.get("FunctionUrlAuthType") == "NONE" for p in url_invoke):
        problems.append("the webhook URL has no public lambda:InvokeFunctionUrl permission")
    invoke = [p for p in permissions if p["Action"] == "lambda:InvokeFunction"]
    if not any(p.get("Principal") == "*" and p.get("InvokedViaFunctionUrl") is True for p in invoke):
        problems.append("the webhook URL has no lambda:InvokeFunction permission limited to the URL")
    if any(p.get("InvokedViaFunctionUrl") is not True for p in invoke):
        problems.append("the webhook may be invoked by anyone other than through its URL")
    return problems


def references(value):
    """Every logical name a value points at: Ref, GetAtt and the ${...} of Sub."""
    if isinstance(value, dict):
        if len(value) == 1:
            (fn, arg), = value.items()
            if fn == "Ref":
                return [arg]
            if fn == "Fn::GetAtt":
                return [arg[0] if isinstance(arg, list) else arg.split(".")[0]]
            if fn == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                names = [m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text) if m not in variables]
                return names + [n for v in variables.values() for n in references(v)]
        return [n for v in value.values() for n in references(v)]
    if isinstance(value, list):
        return [n for v in value for n in references(v)]
    return []


def env_problems(cfn):
    problems = []
    known = set(cfn["Resources"]) | set(cfn.get("Parameters", {})) | PSEUDO
    for logical, fn in resources_of(cfn, "AWS::Lambda::Function").items():
        variables = fn["Properties"].get("Environment", {}).get("Variables", {})
        if not variables:
            problems.append(f"{logical}: no environment")
        for key, value in variables.items():
            for name in references(value):
                if name not in known:
                    problems.append(f"{logical}: {key} refers to {name}, which the stack does not have")
    return problems


def watch_router():
    with open(os.path.join(ROOT, "Cargo.toml"), "rb") as f:
        router = tomllib.load(f)["workspace"]["metadata"]["lambda"]["watch"]["router"]
    return {(r["method"], path, BINARIES[r["function"]]) for path, rules in router.items() for r in rules}


def api_routes(cfn):
    """(METHOD, path, function) of every route of the HTTP API, from its OpenAPI body."""
    routes = set()
    for api in resources_of(cfn, "AWS::ApiGatewayV2::Api").values():
        for path, methods in api["Properties"]["Body"]["paths"].items():
            for method, op in methods.items():
                uri = op["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
                function = re.search(r"\$\{(\w+)\.Arn\}", uri).group(1)
                routes.add((method.upper(), path, function))
    return routes


def route_problems(cfn):
    """The HTTP API's routes are the route table `make dev` serves (Cargo.toml's cargo lambda watch
    router): same methods, paths and functions. No OPTIONS route: API Gateway answers preflights."""
    problems = []
    table, api = watch_router(), api_routes(cfn)
    for route in sorted(table - api):
        problems.append(f"route {route} is in the route table but not in the HTTP API")
    for route in sorted(api - table):
        problems.append(f"route {route} is in the HTTP API but not in the route table")
    for method, path, _ in api:
        if method == "OPTIONS":
            problems.append(f"OPTIONS {path} is routed to a function; API Gateway answers preflights")
    for logical, permission in resources_of(cfn, "AWS::Lambda::Permission").items():
        props = permission["Properties"]
        if props.get("Principal") == "apigateway.amazonaws.com":
            source = props["SourceArn"]["Fn::Sub"][0]
            method, path = re.search(r"\$\{__Stage__\}/(\w+)(/.*)$", source).groups()
            path = re.sub(r"\*", "{id}", path)
            fn = props["FunctionName"]["Ref"]
            if (method, path, fn) not in api:
                problems.append(f"{logical} lets API Gateway invoke {fn} for {method} {path}, which is no route")
    return problems


def cors_problems(cfn):
    """API Gateway decides CORS for the API (it answers preflights and replaces a function's CORS
    headers): its configuration is the exact origins list, credentials, and what the functions need."""
    problems = []
    (api,) = resources_of(cfn, "AWS::ApiGatewayV2::Api").values()
    cors = api["Properties"]["Body"].get("x-amazon-apigateway-cors")
    if not cors:
        return ["the HTTP API has no CORS configuration"]
    if as_list(cors["allowOrigins"]) != PARAMETERS["AllowedOrigins"]:
        problems.append(f"allowOrigins {cors['allowOrigins']!r} is not the AllowedOrigins list")
    expected = {"allowCredentials": True, "allowHeaders": ["authorization", "content-type", "if-match"],
                "allowMethods": ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                "exposeHeaders": ["location", "etag", "x-cache"], "maxAge": 600}
    for key, value in expected.items():
        if cors.get(key) != value:
            problems.append(f"CORS {key} is {cors.get(key)!r}, intended {value!r}")
    return problems


def queue_mapping_problems(cfn):
    problems = []
    mappings = resources_of(cfn, "AWS::Lambda::EventSourceMapping")
    if set(mappings) != {"EmailSenderFunctionEmailJobs"}:
        return [f"event source mappings {sorted(mappings)}"]
    props = mappings["EmailSenderFunctionEmailJobs"]["Properties"]
    expected = {"BatchSize": 10, "MaximumBatchingWindowInSeconds": 5,
                "FunctionResponseTypes": ["ReportBatchItemFailures"], "ScalingConfig": {"MaximumConcurrency": 5},
                "EventSourceArn": {"Fn::GetAtt": ["EmailQueue", "Arn"]},
                "FunctionName": {"Ref": "EmailSenderFunction"}}
    for key, value in expected.items():
        if props.get(key) != value:
            problems.append(f"EmailJobs {key} is {props.get(key)!r}, intended {value!r}")
    queue = cfn["Resources"]["EmailQueue"]["Properties"]
    if queue["RedrivePolicy"] != {"deadLetterTargetArn": {"Fn::GetAtt": ["EmailDeadLetterQueue", "Arn"]},
                                  "maxReceiveCount": 5}:
        problems.append(f"EmailQueue redrive {queue['RedrivePolicy']}")
    timeout = cfn["Resources"]["EmailSenderFunction"]["Properties"]["Timeout"]
    if queue["VisibilityTimeout"] < 6 * timeout:
        problems.append("EmailQueue's visibility timeout is under six times the function timeout")
    return problems


def table_problems(cfn):
    problems = []
    tables = resources_of(cfn, "AWS::DynamoDB::Table")
    if set(tables) != {"PostsTable", "UsersTable", "OrdersTable", "SubscriptionsTable", "IdempotencyTable"}:
        problems.append(f"tables {sorted(tables)}")
    for logical, table in tables.items():
        props = table["Properties"]
        if props.get("PointInTimeRecoverySpecification") != {"PointInTimeRecoveryEnabled": True}:
            problems.append(f"{logical}: point-in-time recovery is off")
        if props.get("SSESpecification") != {"SSEEnabled": True}:
            problems.append(f"{logical}: SSE is off")
        if table.get("DeletionPolicy") != "Retain":
            problems.append(f"{logical}: not retained on stack deletion")
        ttl = props.get("TimeToLiveSpecification")
        if logical == "IdempotencyTable":
            if ttl != {"AttributeName": "expiration", "Enabled": True}:
                problems.append(f"IdempotencyTable TTL is {ttl!r}, intended on `expiration`")
        elif ttl is not None:
            problems.append(f"{logical}: an unexpected TTL {ttl!r}")
        gsis = props.get("GlobalSecondaryIndexes", [])
        if logical == "PostsTable":
            want = [{"IndexName": "byFeed", "KeySchema": [{"AttributeName": "feed", "KeyType": "HASH"},
                                                          {"AttributeName": "createdAt", "KeyType": "RANGE"}],
                     "Projection": {"ProjectionType": "ALL"}}]
            if gsis != want:
                problems.append(f"PostsTable indexes {gsis!r}, intended byFeed (feed, createdAt), all attributes")
        elif gsis:
            problems.append(f"{logical}: unexpected indexes")
    return problems


def bucket_problems(cfn):
    problems = []
    props = cfn["Resources"]["UploadsBucket"]["Properties"]
    rules = props["CorsConfiguration"]["CorsRules"]
    want = [{"AllowedOrigins": {"Ref": "AllowedOrigins"}, "AllowedMethods": ["PUT"],
             "AllowedHeaders": ["Content-Type", "If-None-Match"], "ExposedHeaders": ["ETag"], "MaxAge": 600}]
    if rules != want:
        problems.append(f"bucket CORS {rules!r}, intended PUT with Content-Type and If-None-Match from AllowedOrigins")
    block = props.get("PublicAccessBlockConfiguration", {})
    if not all(block.get(k) is True for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls",
                                              "RestrictPublicBuckets")):
        problems.append("public access is not fully blocked")
    policies = [p["Properties"] for p in resources_of(cfn, "AWS::S3::BucketPolicy").values()
                if p["Properties"]["Bucket"] == {"Ref": "UploadsBucket"}]
    tls_only = any(
        s.get("Effect") == "Deny" and s.get("Principal") == "*" and s.get("Action") == "s3:*"
        and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        and {show(r) for r in as_list(s.get("Resource"))} == {"UploadsBucket.Arn", "${UploadsBucket.Arn}/*"}
        for p in policies for s in as_list(p["PolicyDocument"]["Statement"]))
    if not tls_only:
        problems.append("the bucket policy does not deny every request over plain HTTP, on the bucket and its objects")
    return problems


# ----------------------------------------------------------------------------- the contract
def test_each_function_may_do_exactly_what_it_needs(cfn):
    assert iam_problems(cfn) == []


def test_the_webhook_url_has_both_invoke_permissions(cfn):
    assert function_url_problems(cfn) == []


def test_every_environment_reference_resolves_to_the_stack(cfn):
    assert env_problems(cfn) == []


def test_the_http_api_routes_are_the_route_table(cfn):
    assert route_problems(cfn) == []
    # The table is not empty by accident: eleven routes, five functions' worth of the API.
    assert len(api_routes(cfn)) == 11


def test_api_gateway_cors_is_the_configured_one(cfn):
    assert cors_problems(cfn) == []


def test_the_queue_mapping_reports_partial_failures_in_small_batches(cfn):
    assert queue_mapping_problems(cfn) == []


def test_tables_have_ttl_index_and_point_in_time_recovery(cfn):
    assert table_problems(cfn) == []


def test_the_bucket_takes_browser_puts_and_tls_only(cfn):
    assert bucket_problems(cfn) == []


# ----------------------------------------------------------------------------- the checks catch
def mutated(edit):
    template = sam_template()
    edit(template["Resources"])
    return translate(template)


def drop_action(resources, function, action):
    for statement in resources[function]["Properties"]["Policies"][-1]["Statement"]:
        statement["Action"] = [a for a in as_list(statement["Action"]) if a != action]
    for policy in resources[function]["Properties"]["Policies"]:
        if isinstance(policy, dict) and "Statement" in policy:
            policy["Statement"] = [s for s in policy["Statement"] if s["Action"]]


def test_a_removed_permission_is_caught():
    cfn = mutated(lambda r: drop_action(r, "PostsReadFunction", "dynamodb:Query"))
    assert any("PostsReadFunction: lacks dynamodb:Query" in p for p in iam_problems(cfn))


def test_an_extra_permission_is_caught():
    def widen(resources):
        resources["PostsReadFunction"]["Properties"]["Policies"][0]["Statement"][0]["Action"].append("dynamodb:Scan")
    assert any("may dynamodb:Scan" in p for p in iam_problems(mutated(widen)))


def test_a_removed_url_permission_is_caught():
    cfn = translate(sam_template())
    del cfn["Resources"]["StripeWebhookFunctionURLInvokeAllowPublicAccess"]
    assert function_url_problems(cfn) == ["the webhook URL has no lambda:InvokeFunction permission limited to the URL"]


def test_a_removed_route_is_caught():
    cfn = mutated(lambda r: r["PostsWriteFunction"]["Properties"]["Events"].pop("DeletePost"))
    assert route_problems(cfn) == [
        "route ('DELETE', '/posts/{id}', 'PostsWriteFunction') is in the route table but not in the HTTP API"]


def test_a_broken_environment_reference_is_caught():
    def rename(resources):
        resources["PostsReadFunction"]["Properties"]["Environment"]["Variables"]["POSTS_TABLE"] = {"Ref": "PostTable"}
    assert env_problems(mutated(rename)) == [
        "PostsReadFunction: POSTS_TABLE refers to PostTable, which the stack does not have"]


def test_a_lost_ttl_or_batch_setting_is_caught():
    def edit(resources):
        del resources["IdempotencyTable"]["Properties"]["TimeToLiveSpecification"]
        resources["EmailSenderFunction"]["Properties"]["Events"]["EmailJobs"]["Properties"].pop("FunctionResponseTypes")
    cfn = mutated(edit)
    assert table_problems(cfn) and queue_mapping_problems(cfn)
