// The app's own routes of the Nest servers under `--routes=100`: a controller with `@Get('r0')`…
// `@Get('r99')`, listed before the WebSocket controller, so that Nest registers them first.
import { Controller, Get, Type } from '@nestjs/common';
import { routePaths } from './serve';

/** A controller with one `@Get` method per path of `routePaths()`, or none under no `--routes`. */
export function routesControllers(): Type[] {
  const paths = routePaths();
  if (!paths.length) return [];
  @Controller()
  class RoutesController {}
  for (const path of paths) {
    const name = path.slice(1);
    // a function of its own for each route: Nest keeps a route's metadata on the function
    const descriptor: PropertyDescriptor = {
      value: function () {
        return 'ok';
      },
      writable: true,
      configurable: true,
    };
    Object.defineProperty(RoutesController.prototype, name, descriptor);
    Get(name)(RoutesController.prototype, name, descriptor);
  }
  return [RoutesController];
}
