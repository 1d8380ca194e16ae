"""The subset of Shopify's GraphQL Admin API the simulator serves, in SDL (docs/adr/0033).

Names and shapes follow the public schema (``orders``, ``abandonedCheckouts``, ``products``,
``customers``; connections with ``edges``/``nodes``/``pageInfo``; ``fulfillmentCreate``,
``productVariantsBulkUpdate``, ``inventorySetQuantities`` with ``userErrors``); only the fields
the connector reads or writes are declared. graphql-core parses, validates and executes
requests against it, so a query that names a field Shopify lacks fails here as it would there.
"""

from __future__ import annotations

from functools import lru_cache

from graphql import GraphQLSchema, build_schema

__all__ = ["SDL", "schema"]

SDL = """
scalar DateTime
scalar Decimal
scalar URL

type PageInfo {
  hasNextPage: Boolean!
  hasPreviousPage: Boolean!
  startCursor: String
  endCursor: String
}

type MoneyV2 { amount: Decimal! currencyCode: String! }
type MoneyBag { shopMoney: MoneyV2! }

type Customer {
  id: ID!
  email: String
  phone: String
  firstName: String
  lastName: String
  createdAt: DateTime!
  updatedAt: DateTime!
}
type CustomerEdge { cursor: String! node: Customer! }
type CustomerConnection { edges: [CustomerEdge!]! nodes: [Customer!]! pageInfo: PageInfo! }

type InventoryItem { id: ID! sku: String }

type ProductVariant {
  id: ID!
  title: String!
  sku: String
  price: Decimal!
  inventoryQuantity: Int
  inventoryItem: InventoryItem!
}
type ProductVariantEdge { cursor: String! node: ProductVariant! }
type ProductVariantConnection { edges: [ProductVariantEdge!]! nodes: [ProductVariant!]! pageInfo: PageInfo! }

type Product {
  id: ID!
  title: String!
  handle: String!
  status: String!
  createdAt: DateTime!
  updatedAt: DateTime!
  variants(first: Int, after: String): ProductVariantConnection!
}
type ProductEdge { cursor: String! node: Product! }
type ProductConnection { edges: [ProductEdge!]! nodes: [Product!]! pageInfo: PageInfo! }

type LineItem {
  id: ID!
  title: String!
  sku: String
  quantity: Int!
  originalUnitPriceSet: MoneyBag!
}
type LineItemEdge { cursor: String! node: LineItem! }
type LineItemConnection { edges: [LineItemEdge!]! nodes: [LineItem!]! pageInfo: PageInfo! }

type FulfillmentOrder { id: ID! status: String! }
type FulfillmentOrderEdge { cursor: String! node: FulfillmentOrder! }
type FulfillmentOrderConnection { edges: [FulfillmentOrderEdge!]! nodes: [FulfillmentOrder!]! pageInfo: PageInfo! }

type FulfillmentTrackingInfo { number: String company: String url: URL }
type Fulfillment {
  id: ID!
  status: String!
  createdAt: DateTime!
  trackingInfo(first: Int): [FulfillmentTrackingInfo!]!
}

type Order {
  id: ID!
  name: String!
  email: String
  createdAt: DateTime!
  updatedAt: DateTime!
  cancelledAt: DateTime
  displayFinancialStatus: String
  displayFulfillmentStatus: String!
  currencyCode: String!
  totalPriceSet: MoneyBag!
  customer: Customer
  lineItems(first: Int, after: String): LineItemConnection!
  fulfillmentOrders(first: Int, after: String): FulfillmentOrderConnection!
  fulfillments(first: Int): [Fulfillment!]!
}
type OrderEdge { cursor: String! node: Order! }
type OrderConnection { edges: [OrderEdge!]! nodes: [Order!]! pageInfo: PageInfo! }

type AbandonedCheckoutLineItem {
  id: ID!
  title: String!
  sku: String
  quantity: Int!
  originalUnitPriceSet: MoneyBag!
}
type AbandonedCheckoutLineItemEdge { cursor: String! node: AbandonedCheckoutLineItem! }
type AbandonedCheckoutLineItemConnection {
  edges: [AbandonedCheckoutLineItemEdge!]!
  nodes: [AbandonedCheckoutLineItem!]!
  pageInfo: PageInfo!
}

type AbandonedCheckout {
  id: ID!
  abandonedCheckoutUrl: URL!
  createdAt: DateTime!
  updatedAt: DateTime!
  completedAt: DateTime
  customer: Customer
  totalPriceSet: MoneyBag!
  lineItems(first: Int, after: String): AbandonedCheckoutLineItemConnection!
}
type AbandonedCheckoutEdge { cursor: String! node: AbandonedCheckout! }
type AbandonedCheckoutConnection {
  edges: [AbandonedCheckoutEdge!]!
  nodes: [AbandonedCheckout!]!
  pageInfo: PageInfo!
}

enum OrderSortKeys { ID UPDATED_AT CREATED_AT }
enum ProductSortKeys { ID UPDATED_AT }
enum CustomerSortKeys { ID UPDATED_AT }
enum AbandonedCheckoutSortKeys { ID CREATED_AT }

type Query {
  orders(first: Int, after: String, query: String, sortKey: OrderSortKeys, reverse: Boolean): OrderConnection!
  abandonedCheckouts(first: Int, after: String, query: String, sortKey: AbandonedCheckoutSortKeys,
                     reverse: Boolean): AbandonedCheckoutConnection!
  products(first: Int, after: String, query: String, sortKey: ProductSortKeys, reverse: Boolean): ProductConnection!
  customers(first: Int, after: String, query: String, sortKey: CustomerSortKeys, reverse: Boolean): CustomerConnection!
  order(id: ID!): Order
}

type UserError { field: [String!] message: String! }

input FulfillmentOrderLineItemsInput { fulfillmentOrderId: ID! }
input FulfillmentTrackingInput { number: String company: String url: URL }
input FulfillmentInput {
  lineItemsByFulfillmentOrder: [FulfillmentOrderLineItemsInput!]!
  trackingInfo: FulfillmentTrackingInput
  notifyCustomer: Boolean
}
type FulfillmentCreatePayload { fulfillment: Fulfillment userErrors: [UserError!]! }

input ProductVariantsBulkInput { id: ID! price: Decimal }
type ProductVariantsBulkUpdatePayload {
  product: Product
  productVariants: [ProductVariant!]
  userErrors: [UserError!]!
}

input InventoryQuantityInput { inventoryItemId: ID! locationId: ID! quantity: Int! compareQuantity: Int }
input InventorySetQuantitiesInput {
  name: String!
  reason: String!
  ignoreCompareQuantity: Boolean
  referenceDocumentUri: String
  quantities: [InventoryQuantityInput!]!
}
type InventoryAdjustmentGroup { id: ID! reason: String! createdAt: DateTime! }
type InventorySetQuantitiesPayload {
  inventoryAdjustmentGroup: InventoryAdjustmentGroup
  userErrors: [UserError!]!
}

type Mutation {
  fulfillmentCreate(fulfillment: FulfillmentInput!, message: String): FulfillmentCreatePayload
  productVariantsBulkUpdate(productId: ID!, variants: [ProductVariantsBulkInput!]!): ProductVariantsBulkUpdatePayload
  inventorySetQuantities(input: InventorySetQuantitiesInput!): InventorySetQuantitiesPayload
}
"""


@lru_cache(maxsize=1)
def schema() -> GraphQLSchema:
    return build_schema(SDL)
