import type { ExceptionFilterMetadata } from '@nestjs/common/interfaces/exceptions/exception-filter-metadata.interface';
import type { ModuleRef } from '@nestjs/core';
import type { NestContainer } from '@nestjs/core/injector/container';
import type { ExceptionsHandler } from '@nestjs/core/exceptions/exceptions-handler';

// What the route needs of Nest beyond its public API, in one place. Read from @nestjs/core
// 12.5: ModuleRef keeps the container it was made from, and an ExceptionsHandler the filters
// bound to its route (method, controller, global, APP_FILTER), in Nest's order.

/** The application's container, to compose context creators with a controller's own module. */
export function containerOf(moduleRef: ModuleRef): NestContainer {
  return (moduleRef as unknown as { container: NestContainer }).container;
}

/** The exception filters bound to a route, in the order Nest tries them. */
export function filtersOf(
  exceptions: ExceptionsHandler,
): ExceptionFilterMetadata[] {
  return (exceptions as unknown as { filters: ExceptionFilterMetadata[] })
    .filters;
}
